"""Scale-out: ``spanqa run --engine ray`` runs the whole job on a Ray cluster (Ray Data).

``inputs`` names and reads INPUT into question rows, ``ray_job`` runs the actor pool and checks
what comes back, ``ship`` carries a model package to nodes that cannot read its path. Ray is
imported inside functions only: ``spanqa --help`` never loads it.
"""

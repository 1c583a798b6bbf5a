"""spanqa against its peers: ``python benchmarks/peers.py --help``; the code is the package
benchmarks/peers/ (its driver.py says what the table shows). Run as a script, this file's folder
is first on sys.path, so ``import peers`` below (and in the other benchmarks) finds that package,
never this file."""

from peers.driver import main

if __name__ == "__main__":
    main()

"""``spanqa loadgen``: MLPerf Inference's LoadGen driving spanqa as MLPerf measures systems.

LoadGen (``mlcommons-loadgen``, module ``mlperf_loadgen``) issues the queries and times them;
spanqa supplies the system under test (SUT) and the sample library. ``harness.py`` holds the
LoadGen calls (test settings, one test, its logs); ``samples.py`` the samples (SQuAD questions
as strings, or pre-tokenised windows with ``--features``); ``batcher.py`` the online batcher of
the in-process SUT; ``suts.py`` the two SUTs (the in-process ``Engine``, any HTTP server that
speaks Hugging Face's question-answering schema); ``run.py`` the scenarios, modes and find-peak;
``report.py`` the table. Settings: ``spanqa.settings.LoadgenSettings``. docs/loadgen.md.
"""

from spanqa.loadgen.run import LoadgenReport, run_loadgen

__all__ = ["LoadgenReport", "run_loadgen"]

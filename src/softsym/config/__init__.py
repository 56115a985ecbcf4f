"""The job configuration around Hydra: the option schema and the checks run before any work
(``schema``, ``check``, ``overrides``), the job key that lets a sweep skip finished jobs (``job_key``), and
the rule by which a command-line sweep replaces an experiment's grid (``sweeper``)."""

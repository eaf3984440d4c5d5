"""Running the levels: checks before work, the Nipype run, failures per participant, SLURM.

- :mod:`.levels`: ``run_level`` builds the workflows of a level and runs them.
- :mod:`.preflight`: what is checked before any participant work.
- :mod:`.environment`: caches and temporary files under the work directory, Nipype's
  configuration, SIGTERM handling.
- :mod:`.engine`: the Nipype ``Workflow`` that carries its methods text.
- :mod:`.progress`: the progress bar / log lines.
- :mod:`.crashes`: Nipype crash files read back as one line per failure.
- :mod:`.slurm`: ``msica submit``'s job array and group job.
"""

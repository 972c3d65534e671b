"""What the tests share besides conftest.py's fixtures: forked processes (forked.py), the W&B offline record reader
(wandb_reader.py), a local SLURM cluster (slurm_cluster.py, installed by install_slurm.sh), and the scripts that run
as the ranks of a multi-process test (dist_probe.py, step_probe.py)."""

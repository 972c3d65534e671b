"""The run folder and everything in it: its layout, who owns it (the lock), checkpoints, the run's lifecycle
(session), what it reports (tracking), its pictures, and the model folders exported from it."""

"""The command line, one module per command: each adds its subparser and runs it. Imports stay light at module
level (`dcgan config` answers job scripts without importing torch); the work is imported when a command runs."""

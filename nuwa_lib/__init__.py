"""nuwa_lib: the library behind the NUWA companion notebooks."""
__version__ = "0.1.0"

"""The embedded runtime behind `kubetune run`: same planners, an in-process store, local Jobs."""

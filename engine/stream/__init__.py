"""The live stream engine: motion sources -> window -> renderer (batched, off the event loop) -> sinks."""

"""Compiler: torch -> ONNX export (verified), graph passes, backends, profiling."""

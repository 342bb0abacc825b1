"""Workflows: end-to-end jobs that join the packages below them (compile, run on the device side,
simulate, write reports). The `tridesign` commands call these; nothing below imports them.
"""

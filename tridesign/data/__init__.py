"""Data the project makes or ships (no dataset can be downloaded here): numpy only, importable from
every package, the device side included.
"""

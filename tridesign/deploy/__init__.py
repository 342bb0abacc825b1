"""The device side: what runs where only an inference engine exists.

Nothing here imports torch at module level; submodules are imported explicitly by their users so
that `import tridesign.deploy` stays cheap on a small board.
"""

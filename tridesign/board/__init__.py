"""What runs on the board: the bundle runner and its engines (ONNX Runtime, the TVM runtime,
TensorRT), the bundle check, power sampling.

Shipped verbatim inside every deployment bundle (as the package `tridesign_board`), so it imports
only the standard library, numpy and the runtime it drives, and its modules import one another
relatively: `python -m tridesign_board BUNDLE_DIR` on a board that has no tridesign, no torch and
no compiler. tests/test_architecture.py checks that nothing here imports the rest of tridesign.
"""

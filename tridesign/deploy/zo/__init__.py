"""Zeroth-order (ZO) on-device finetuning: gradients estimated from forward passes alone.

Submodules: `optimizers` (ZO-SGD, ZO-Adam), `engine_ort` / `engine_tvm` (inference sessions with
trainable tensors as inputs), `feature_reuse`, `batched` and `process_pool` (forward
parallelization), `finetune` (the loop), `prompts` (visual-prompt mode). Import them explicitly:
this package imports nothing heavy on its own, and never torch. The estimators (RGE, CGE) are in
tridesign.zo.estimators, which the compiler's ZO-GraSP uses too; ZO-AE-DS, whose white box
trains in torch on the host, is tridesign.workflows.zo_aeds.
"""

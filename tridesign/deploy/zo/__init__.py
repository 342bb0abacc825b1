"""Zeroth-order (ZO) on-device finetuning: gradients estimated from forward passes alone.

Submodules: `estimators` (RGE, CGE), `optimizers` (ZO-SGD, ZO-Adam), `engine_ort` / `engine_tvm`
(inference sessions with trainable tensors as inputs), `feature_reuse`, `parallel`, `finetune`
(the loop), `aeds` (ZO-AE-DS mode), `prompts` (visual-prompt mode). Import them explicitly: this
package imports nothing heavy on its own, and never torch.
"""

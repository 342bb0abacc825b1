"""Hand-written kernels: packing formats, numpy references and TVM TIR kernels (CPU and CUDA).

Sparse kernels (BSR, CSR-conv, N:M; active tiles for data sparsity) make pruning pay off in real
latency; dense kernels (register-tiled direct and Winograd convolutions) and a max-pool cover what
MetaSchedule schedules poorly on CPUs. The `relax_*` modules put them into a Relax module, which the
TVM backend's rewrite stage (tridesign.compiler.tvm.rewrites) does for `compile` and `tune` alike.
"""

"""The TVM compile path in stages, each module importing only the ones before it:

`rewrites` (the project's own Relax rewrites onto tridesign.kernels, as pass objects in one stage
list) → `frontend` (ONNX → Relax → those rewrites → fused TIR, and TVM's closing stages) →
`tuning` (MetaSchedule database: tune, apply). tridesign.compiler.backends.tvm builds artifacts on
top of them; tridesign.deploy.tvm_runtime imports ONNX models and runs what was built.
"""

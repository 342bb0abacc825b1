"""Custom sparse kernels: packing formats, numpy references and TVM TIR kernels (CPU and CUDA).

Weight sparsity (BSR, CSR-conv, N:M) and data sparsity (active tiles) become real speedups here;
`relax_integration` puts them into the TVM backend's Relax module.
"""

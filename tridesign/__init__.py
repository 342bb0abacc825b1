"""tridesign: edge deployment and data-model-circuit co-design for the models of eight research projects.

Importing the package stays light (no torch, no TVM): the device side imports only what it runs.
"""

__version__ = "0.1.0"

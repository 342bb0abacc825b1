"""Zeroth-order maths (RGE and CGE gradient estimators): numpy only, no engine.

Shared by the compiler (ZO-GraSP pruning scores) and the device side (tridesign.deploy.zo, which
finetunes deployed models with them), so neither has to import the other.
"""

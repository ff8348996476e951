"""Meter software integrity: the dynamic integrity measurement scheme of seed paper 003.

Offline: record the meter program's behaviour traces (`recording`, `trace`) and embed HV, the
trace and DSig in its ELF file (`embed`, `section`). Run time: a seccomp + ptrace monitor
(`tracer`, `monitor`) judges every modification behaviour (`judgement`: f_d, f_v, f_j), kills a
malicious program and appends each judgement to a signed audit log (`auditlog`); a signed
report carries the verdict to the head-end (`report`, `state`). See docs/integrity.md.
"""

"""What runs inside kubetune's pods: ``python -m kubetune_workloads <step> --spec FILE``.

Steps: dataprep, finetune, compress, evaluate, feedback. They depend on ``kubetune.api`` (the step
contract) only, and import torch/transformers lazily.
"""

"""Constants shared across data, losses and evaluation, each defined here only.

`IGNORE_INDEX`: the label of a token that is not supervised (prompt and padding), the value
`torch.nn.functional.cross_entropy` skips by default.
"""

IGNORE_INDEX = -100

"""Local self-attention for the ResNet backbone (Ramachandran et al. 2019).

Empty for now: the layer (``LocalSelfAttention2D``) and the attention bottleneck block land with the
attention issue, after the Mask R-CNN graph they plug into.
"""

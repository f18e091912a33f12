"""Local self-attention for the ResNet backbone (Ramachandran et al. 2019, "Stand-Alone Self-Attention
in Vision Models"): :class:`LocalSelfAttention2D`, a Keras 3 layer written in ``keras.ops``.
"""

from attention.local_attention import LocalSelfAttention2D

__all__ = ["LocalSelfAttention2D"]

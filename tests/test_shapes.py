import numpy as np

from mrcnn.shapes import ShapesDataset, draw_shape


def test_shapes_masks_hold_visible_pixels_and_match_the_image():
    dataset = ShapesDataset()
    dataset.load_shapes(5, 64, 96, seed=1, min_shapes=3, max_shapes=5)
    dataset.prepare()
    assert dataset.class_names == ["BG", "square", "circle", "triangle"]
    for image_id in dataset.image_ids:
        info = dataset.image_info[image_id]
        image = dataset.load_image(image_id)
        mask, class_ids = dataset.load_mask(image_id)
        assert image.shape == (64, 96, 3) and mask.shape == (64, 96, len(info["shapes"]))
        assert mask.sum(axis=-1).max() <= 1  # occlusion: no pixel belongs to two instances
        # Drawing each shape alone, then removing what later shapes cover, gives the same masks
        for i, (shape, color, dims) in enumerate(info["shapes"]):
            alone = draw_shape(np.zeros((64, 96), np.uint8), shape, dims, (1,)).astype(bool)
            for later_shape, _, later_dims in info["shapes"][i + 1:]:
                alone &= ~draw_shape(np.zeros((64, 96), np.uint8), later_shape, later_dims, (1,)).astype(bool)
            assert np.array_equal(mask[:, :, i], alone)
            if alone.any():
                assert (image[alone] == color).all()
            assert dataset.class_names[class_ids[i]] == shape

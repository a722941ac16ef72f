"""Network visualization (assignment 3's saliency maps, fooling images and class
visualization) and the attribution methods users expect (SmoothGrad, Integrated
Gradients, Grad-CAM), on any classifier mapping preprocessed (N, 3, H, W) images
to (N, C) scores -- in practice :mod:`a3ext.models`' EfficientNet-Lite0 / SqueezeNet.

    X = model.preprocess(img)                                 # (1, 3, 224, 224)
    compute_saliency_maps(X, y, model)                        # (N, H, W)
    X_fooling = make_fooling_image(X, target, model)          # (1, 3, H, W), the assignment's contract
    r = fool(X, target, model)                                # FoolingResult: .image, .iterations, .linf_pixels
    img = create_class_visualization(target, model, dtype)    # PIL image, the assignment's contract
    v = visualize_class(target, model, generator=torch.Generator().manual_seed(0))  # ClassVisualization
    smoothgrad(X, y, model), integrated_gradients(X, y, model)        # (N, 3, H, W)
    grad_cam(X, y, model, layer="_bn1")                       # (N, H, W)
    render.overlay_heatmap(model.deprocess(X), heatmap)       # PIL image

Modules: :mod:`.attribution` (gradients of a class score), :mod:`.synthesis`
(gradient ascent on the image), :mod:`.feature_vis` (class visualizations in a
Fourier basis with decorrelated colour and random transforms, and the
transformed-probability metric), :mod:`.render` (heatmaps and figures),
:mod:`.classes` (classes by index or name), :mod:`.cli` (``a3ext visualize``).

May import: ``a3ext.visualization.attribution``, ``a3ext.visualization.classes``,
``a3ext.visualization.render``, ``a3ext.visualization.synthesis``.
"""
from .attribution import (class_score_gradients, completeness_delta, compute_saliency_maps,
                          default_gradcam_layer, grad_cam, ig_alphas_and_weights, integrated_gradients,
                          reduce_channels, resolve_baseline, resolve_layer, smoothgrad)
from .classes import UnknownClassError, resolve_class, short_label
from .render import overlay_heatmap
from .synthesis import (ClassVisualization, FoolingError, FoolingResult, create_class_visualization, fool,
                        gaussian_blur, gaussian_kernel1d, jitter, make_fooling_image, make_fooling_images,
                        visualize_class)

__all__ = [
    "compute_saliency_maps", "class_score_gradients", "smoothgrad", "integrated_gradients",
    "ig_alphas_and_weights", "completeness_delta", "resolve_baseline", "grad_cam", "resolve_layer",
    "default_gradcam_layer", "reduce_channels",
    "make_fooling_image", "fool", "make_fooling_images", "FoolingResult", "FoolingError",
    "create_class_visualization", "visualize_class", "ClassVisualization", "gaussian_blur", "gaussian_kernel1d", "jitter",
    "overlay_heatmap", "resolve_class", "short_label", "UnknownClassError",
]

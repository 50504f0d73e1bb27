"""Ikomia plugin entry point for infer_segment_anything_2."""
from ikomia import dataprocess


class IkomiaPlugin(dataprocess.CPluginProcessInterface):
    """Gives Ikomia the task factory and, in Studio, the widget factory (imported lazily)."""

    def __init__(self):
        dataprocess.CPluginProcessInterface.__init__(self)

    def get_process_factory(self):
        from infer_segment_anything_2.infer_segment_anything_2_process import \
            InferSegmentAnything2Factory
        return InferSegmentAnything2Factory()

    def get_widget_factory(self):
        from infer_segment_anything_2.infer_segment_anything_2_widget import \
            InferSegmentAnything2WidgetFactory
        return InferSegmentAnything2WidgetFactory()

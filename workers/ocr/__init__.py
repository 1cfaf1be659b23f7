"""OCR of image attachments (issue 19): PP-OCRv4 detection + recognition.

``processing`` holds the pure numpy/cv2/pyclipper steps around the two networks (shared by the
in-process runner and the Triton python models); ``local.LocalOcr`` runs both networks in-process
with OpenVINO.
"""

from workers.ocr.processing import DetConfig, OcrLine, RecConfig, TextBox

__all__ = ["DetConfig", "OcrLine", "RecConfig", "TextBox"]

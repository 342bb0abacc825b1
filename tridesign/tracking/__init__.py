"""Multi-object tracking on detector boxes: MOT-challenge files, a constant-velocity Kalman
filter, a ByteTrack-style tracker and TrackEval's metrics. numpy, scipy and TrackEval only: no
torch, no models, so that it runs wherever the compiled detector runs.

Association is ByteTrack's: IoU between Kalman-predicted track boxes and detections, Hungarian
assignment (scipy), high-score detections first and low-score ones second. There is no appearance
embedding (QDTrack's quasi-dense matching) because the video detector has no embedding head.
Dropped frames (temporal data sparsity) are bridged by the motion model: `Tracker.predict_only`.
"""

from tridesign.tracking.metrics import score
from tridesign.tracking.mot import MotRow, read_mot, write_results
from tridesign.tracking.tracker import Tracker, TrackerConfig, TrackOut, iou_matrix

__all__ = ["MotRow", "TrackOut", "Tracker", "TrackerConfig", "iou_matrix", "read_mot", "score", "write_results"]

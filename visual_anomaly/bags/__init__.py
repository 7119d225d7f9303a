"""Bags: rosbag2 recordings in and out of the detector, with no ROS install needed (no rclpy).

Modules: :mod:`~visual_anomaly.bags.io` (reading and writing bags, topics, messages),
:mod:`~visual_anomaly.bags.labels` (ground truth per frame), :mod:`~visual_anomaly.bags.convert`
(dataset -> bag), :mod:`~visual_anomaly.bags.evaluate` (offline scoring, overlays),
:mod:`~visual_anomaly.bags.training_set` (patrol -> training set) and
:mod:`~visual_anomaly.bags.calibrate` (a model's threshold set on a normal patrol); many bags at once on Ray:
:mod:`~visual_anomaly.bags.fleet` (finding bags, running them), :mod:`~visual_anomaly.bags.fleet_evaluate`,
:mod:`~visual_anomaly.bags.fleet_report` and :mod:`~visual_anomaly.bags.fleet_batch`. The command line is
``visual-anomaly-bag``.

Bags are read and written with the pure-Python ``rosbags`` library, in rosbag2 format version 9
with sqlite3 (``.db3``) or MCAP storage; evaluation and training sets also read ROS 1 bags. Errors
of that library reach callers as :class:`~visual_anomaly.bags.io.BagError` (a ``ValueError``)
naming the bag.

Conventions
-----------
- **Camera**: ``/camera/image_raw`` carries ``sensor_msgs/msg/Image`` (written as ``bgr8``; any
  encoding the node accepts is read), ``/camera/image_raw/compressed`` carries
  ``sensor_msgs/msg/CompressedImage`` (``format`` ``jpeg``, or ``png`` for PNG files). Header
  ``frame_id`` is ``camera``. When reading, ``--topic`` picks the camera topic; without it the bag
  must hold exactly one Image or CompressedImage topic.
- **Ground truth**: ``/ground_truth/anomaly``, ``geometry_msgs/msg/Vector3Stamped``, one message per
  frame with the frame's header stamp: ``x`` = integer class code (0 = normal, 1-19 the
  Hazards&Robots classes of ``ANOMALY_CLASSES``), ``y`` = difficulty, ``z`` = environment (-1 when
  unknown). This mirrors the node's ``~/anomaly`` output (``x`` score, ``y`` threshold, ``z`` flag).
- **Stamps**: frames and labels are matched by *header* stamp (what the node copies to its outputs),
  never by the bag's receive time. ``from-dataset`` stamps frame ``i`` of the split's sorted files
  at 1,700,000,000 s + i / rate (the bag's receive time is the same).
- **Annotated bags**: ``evaluate --overlay-bag`` writes ``/visual_anomaly/overlay`` (``Image``
  ``bgr8``, the heatmap over the frame with the verdict) and ``/visual_anomaly/anomaly``
  (``Vector3Stamped`` as the node publishes it) under each frame's stamp, in the input bag's storage.
- **Interval labels** (for bags without a ground-truth topic): a CSV with a header line
  ``start,end,label`` and one row per anomalous interval, in seconds. With ``time_base='auto'`` times
  of 1e8 s or more are absolute bag time (Unix seconds, as ``ros2 bag info`` prints it), smaller
  ones are relative to the first camera frame. Intervals are closed (``start <= t <= end``). Labels
  are the user's own classes: any name (``cat``, ``puddle``, ...; not case-sensitive) is reported
  under that name, an integer stands for itself (``class 3``: numbers mean Hazards&Robots classes only
  on the ground-truth topic of a dataset bag); ``0`` or ``normal`` mark normal frames, any other
  label an anomaly; frames outside every interval are normal; where intervals overlap, the later
  row wins.
"""

//! Multi-object tracking by detection: ByteTrack as ultralytics 8.4.190 runs it (`BYTETracker`,
//! `KalmanFilterXYAH`, `bytetrack.yaml`'s defaults), on plain boxes so it needs no model or
//! video. Feed each frame's detections to [`ByteTrack::update`]; it returns the confirmed tracks
//! with stable ids. Ported by hand: the Rust tracking crates follow the original ByteTrack
//! paper's code, whose thresholds, score fusion and track bookkeeping differ from ultralytics',
//! and the parity test holds this port to ultralytics frame by frame.
//!
//! ```
//! use rtdetr_track::{ByteTrack, ByteTrackConfig, TrackInput};
//!
//! let mut tracker = ByteTrack::new(ByteTrackConfig::default());
//! let person = |x: f32| TrackInput { xyxy: [x, 10.0, x + 20.0, 60.0], score: 0.9, class: 0 };
//! let first = tracker.update(&[person(0.0)]);
//! let second = tracker.update(&[person(3.0)]);
//! assert_eq!(first[0].id, second[0].id);
//! ```

mod assignment;
mod byte_track;
mod kalman;

pub use byte_track::{ByteTrack, ByteTrackConfig, Track, TrackInput};

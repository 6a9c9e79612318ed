//! ultralytics 8.4.190's `BYTETracker` against this port, frame by frame, on the detections of
//! `fixtures/gen/gen_track.py` (crossings, occlusions shorter and longer than the track buffer,
//! missed frames, low-score detections, false positives, an empty frame, a zero-width box).

use candle::Device;
use rtdetr_track::{ByteTrack, ByteTrackConfig, TrackInput};

/// Boxes come from the same f64 Kalman arithmetic, rounded to f32 pixels; only the 4×4 solve's
/// rounding (LAPACK against ours) can differ.
const BOX_TOL: f32 = 1e-3;

fn rows(fixture: &fixtures::Fixture, key: &str) -> Vec<Vec<f32>> {
    fixture.get(key).unwrap().to_vec2::<f32>().unwrap()
}

#[test]
fn same_tracks_as_ultralytics_frame_by_frame() {
    let fixture = fixtures::load("track", &Device::Cpu).unwrap();
    let frames: usize = fixture.meta("frames").unwrap().parse().unwrap();
    let detections = rows(&fixture, "detections");
    let expected = rows(&fixture, "tracks");
    let mut tracker = ByteTrack::new(ByteTrackConfig::default());
    let mut compared = 0;
    for f in 0..frames {
        let inputs: Vec<TrackInput> = detections
            .iter()
            .filter(|r| r[0] as usize == f)
            .map(|r| TrackInput {
                xyxy: [r[1], r[2], r[3], r[4]],
                score: r[5],
                class: r[6] as usize,
            })
            .collect();
        let got = tracker.update(&inputs);
        let want: Vec<&Vec<f32>> = expected.iter().filter(|r| r[0] as usize == f).collect();
        let ids = |v: Vec<u64>| v;
        assert_eq!(
            ids(got.iter().map(|t| t.id).collect()),
            ids(want.iter().map(|r| r[5] as u64).collect()),
            "frame {f}: track ids"
        );
        for (g, w) in got.iter().zip(&want) {
            for k in 0..4 {
                assert!(
                    (g.xyxy[k] - w[1 + k]).abs() <= BOX_TOL,
                    "frame {f}, track {}: box {:?}, ultralytics {:?}",
                    g.id,
                    g.xyxy,
                    &w[1..5]
                );
            }
            assert_eq!(
                (g.score, g.class, g.index),
                (w[6], w[7] as usize, w[8] as usize),
                "frame {f}, track {}",
                g.id
            );
            compared += 1;
        }
    }
    assert_eq!(compared, expected.len());
}

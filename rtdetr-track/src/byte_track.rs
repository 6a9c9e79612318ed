use std::collections::{HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::assignment::{fuse_score, iou_distance, linear_assignment};
use crate::kalman::{self, Covariance, Mean};

/// ultralytics' `bytetrack.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ByteTrackConfig {
    /// Detections at or above this score enter the first association (0.25).
    pub track_high_thresh: f32,
    /// Detections above this score (and below the high one) enter the second (0.1).
    pub track_low_thresh: f32,
    /// An unmatched detection starts a track at or above this score (0.25).
    pub new_track_thresh: f32,
    /// Frames a lost track is kept for (30).
    pub track_buffer: u64,
    /// Largest association cost of the first association (0.8).
    pub match_thresh: f64,
    /// Scale IoU similarity by the detection's score (true).
    pub fuse_score: bool,
}

impl Default for ByteTrackConfig {
    fn default() -> Self {
        Self {
            track_high_thresh: 0.25,
            track_low_thresh: 0.1,
            new_track_thresh: 0.25,
            track_buffer: 30,
            match_thresh: 0.8,
            fuse_score: true,
        }
    }
}

/// One detection of a frame, in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackInput {
    /// `[x1, y1, x2, y2]`.
    pub xyxy: [f32; 4],
    /// Confidence.
    pub score: f32,
    /// Class index.
    pub class: usize,
}

/// A confirmed track in the current frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Track {
    /// Track id, from 1.
    pub id: u64,
    /// The Kalman filter's box `[x1, y1, x2, y2]`.
    pub xyxy: [f32; 4],
    /// Score of the detection last matched.
    pub score: f32,
    /// Class of the detection last matched.
    pub class: usize,
    /// Index of that detection in the frame's input.
    pub index: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    New,
    Tracked,
    Lost,
    Removed,
}

/// ultralytics `STrack`.
#[derive(Debug, Clone)]
struct STrack {
    tlwh: [f32; 4],
    filter: Option<(Mean, Covariance)>,
    activated: bool,
    state: State,
    id: u64,
    score: f32,
    class: usize,
    index: usize,
    frame: u64,
    start: u64,
}

/// `tlwh_to_xyah` in f32, as numpy computes it on the f32 box.
fn xyah(tlwh: [f32; 4]) -> [f64; 4] {
    let [l, t, w, h] = tlwh;
    [
        (l + w / 2.0) as f64,
        (t + h / 2.0) as f64,
        (w / h) as f64,
        h as f64,
    ]
}

impl STrack {
    fn detection(input: &TrackInput, index: usize) -> Self {
        let [x1, y1, x2, y2] = input.xyxy;
        // xyxy2xywh in f32, then xywh2ltwh in f64 (parse_bboxes promotes to f64), stored as f32.
        let (cx, cy, w, h) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0, x2 - x1, y2 - y1);
        let (cx, cy, w64, h64) = (cx as f64, cy as f64, w as f64, h as f64);
        Self {
            tlwh: [(cx - w64 / 2.0) as f32, (cy - h64 / 2.0) as f32, w, h],
            filter: None,
            activated: false,
            state: State::New,
            id: 0,
            score: input.score,
            class: input.class,
            index,
            frame: 0,
            start: 0,
        }
    }

    /// The box: the Kalman mean's when there is one, else the detection's (`tlwh`).
    fn tlwh(&self) -> [f64; 4] {
        match &self.filter {
            Some((mean, _)) => {
                let w = mean[2] * mean[3];
                let h = mean[3];
                [mean[0] - w / 2.0, mean[1] - h / 2.0, w, h]
            }
            None => self.tlwh.map(f64::from),
        }
    }

    /// `xyxy` rounded to f32, as `iou_distance` reads it.
    fn xyxy(&self) -> [f32; 4] {
        let [l, t, w, h] = self.tlwh();
        [l as f32, t as f32, (l + w) as f32, (t + h) as f32]
    }

    fn measure(&mut self, det: &STrack, frame: u64) {
        if let Some((mean, cov)) = &self.filter {
            self.filter = Some(kalman::update(mean, cov, xyah(det.tlwh)));
        }
        self.state = State::Tracked;
        self.activated = true;
        self.frame = frame;
        self.score = det.score;
        self.class = det.class;
        self.index = det.index;
    }
}

/// ultralytics 8.4.190's `BYTETracker` (no camera-motion compensation): each frame's detections
/// are split by score, matched to the predicted tracks by IoU (high scores first, then low scores
/// against the tracks still unmatched), and unmatched high-score detections start new tracks.
#[derive(Debug, Clone)]
pub struct ByteTrack {
    cfg: ByteTrackConfig,
    tracked: Vec<STrack>,
    lost: Vec<STrack>,
    removed: VecDeque<u64>,
    frame: u64,
    next_id: u64,
}

/// ultralytics keeps the last 1000 removed tracks to keep them out of the lost pool.
const REMOVED_BUFFER: usize = 1000;

/// `joint_stracks` on arena indices: `a`, then the tracks of `b` whose id `a` lacks.
fn joint(arena: &[STrack], mut a: Vec<usize>, b: &[usize]) -> Vec<usize> {
    let have: HashSet<u64> = a.iter().map(|&i| arena[i].id).collect();
    a.extend(b.iter().filter(|&&i| !have.contains(&arena[i].id)));
    a
}

/// `sub_stracks`: the tracks of `a` whose id is not in `ids`.
fn sub(arena: &[STrack], a: &[usize], ids: &HashSet<u64>) -> Vec<usize> {
    a.iter()
        .copied()
        .filter(|&i| !ids.contains(&arena[i].id))
        .collect()
}

impl ByteTrack {
    /// A tracker with `cfg` (see [`ByteTrackConfig::default`]).
    pub fn new(cfg: ByteTrackConfig) -> Self {
        Self {
            cfg,
            tracked: Vec::new(),
            lost: Vec::new(),
            removed: VecDeque::new(),
            frame: 0,
            next_id: 1,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ByteTrackConfig {
        &self.cfg
    }

    /// Forgets every track; ids start again at 1.
    pub fn reset(&mut self) {
        *self = Self::new(self.cfg.clone());
    }

    /// Advances one frame with its detections and returns the confirmed tracks, in ultralytics'
    /// order.
    pub fn update(&mut self, detections: &[TrackInput]) -> Vec<Track> {
        self.frame += 1;
        let frame = self.frame;
        let cfg = self.cfg.clone();
        let (mut high, mut low) = (Vec::new(), Vec::new());
        for (i, d) in detections.iter().enumerate() {
            // tlwh_to_xyah divides by the height: empty boxes never enter.
            let valid = d.xyxy[2] - d.xyxy[0] > 0.0 && d.xyxy[3] - d.xyxy[1] > 0.0;
            if valid && d.score >= cfg.track_high_thresh {
                high.push(STrack::detection(d, i));
            } else if valid && d.score > cfg.track_low_thresh && d.score < cfg.track_high_thresh {
                low.push(STrack::detection(d, i));
            }
        }

        // Every track of this frame lives in one arena; the lists are indices, as the Python lists
        // share objects.
        let tracked_list: Vec<usize> = (0..self.tracked.len()).collect();
        let mut arena = std::mem::take(&mut self.tracked);
        let lost_list: Vec<usize> = (arena.len()..arena.len() + self.lost.len()).collect();
        arena.append(&mut self.lost);
        let (unconfirmed, confirmed): (Vec<usize>, Vec<usize>) =
            tracked_list.iter().partition(|&&i| !arena[i].activated);
        let pool = joint(&arena, confirmed, &lost_list);
        for &i in &pool {
            let t = &mut arena[i];
            if let Some((mean, cov)) = &t.filter {
                let mut mean = *mean;
                if t.state != State::Tracked {
                    mean[7] = 0.0;
                }
                t.filter = Some(kalman::predict(&mean, cov));
            }
        }
        let (mut activated, mut refind, mut lost_now, mut removed_now) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());

        let d = distances(&arena, &pool, &high, cfg.fuse_score);
        let (matches, u_track, u_det) =
            linear_assignment(&d, pool.len(), high.len(), cfg.match_thresh);
        for (t, det) in matches {
            let i = pool[t];
            let was_tracked = arena[i].state == State::Tracked;
            arena[i].measure(&high[det], frame);
            if was_tracked {
                activated.push(i)
            } else {
                refind.push(i)
            }
        }

        let remaining: Vec<usize> = u_track
            .iter()
            .map(|&t| pool[t])
            .filter(|&i| arena[i].state == State::Tracked)
            .collect();
        let still = if !remaining.is_empty() && !low.is_empty() {
            let d = distances(&arena, &remaining, &low, false);
            let (matches, u, _) = linear_assignment(&d, remaining.len(), low.len(), 0.5);
            for (t, det) in matches {
                arena[remaining[t]].measure(&low[det], frame);
                activated.push(remaining[t]);
            }
            u
        } else {
            (0..remaining.len()).collect()
        };
        for t in still {
            arena[remaining[t]].state = State::Lost;
            lost_now.push(remaining[t]);
        }

        let left: Vec<STrack> = u_det.iter().map(|&i| high[i].clone()).collect();
        let mut fresh: Vec<usize> = (0..left.len()).collect();
        if !unconfirmed.is_empty() {
            let d = distances(&arena, &unconfirmed, &left, cfg.fuse_score);
            let (matches, u_unconfirmed, u_left) =
                linear_assignment(&d, unconfirmed.len(), left.len(), 0.7);
            for (t, det) in matches {
                arena[unconfirmed[t]].measure(&left[det], frame);
                activated.push(unconfirmed[t]);
            }
            for t in u_unconfirmed {
                arena[unconfirmed[t]].state = State::Removed;
                removed_now.push(arena[unconfirmed[t]].id);
            }
            fresh = u_left;
        }
        for i in fresh {
            let mut track = left[i].clone();
            if track.score < cfg.new_track_thresh {
                continue;
            }
            track.id = self.next_id;
            self.next_id += 1;
            track.filter = Some(kalman::initiate(xyah(track.tlwh)));
            track.state = State::Tracked;
            track.activated = frame == 1;
            track.frame = frame;
            track.start = frame;
            arena.push(track);
            activated.push(arena.len() - 1);
        }
        for &i in &lost_list {
            if frame - arena[i].frame > cfg.track_buffer {
                arena[i].state = State::Removed;
                removed_now.push(arena[i].id);
            }
        }

        // merge_track_pools, in its order: the lost pool is cleaned with the removed ids of earlier
        // frames only, so a track removed now lingers in it for one more frame.
        let kept: Vec<usize> = tracked_list
            .into_iter()
            .filter(|&i| arena[i].state == State::Tracked)
            .collect();
        let tracked = joint(&arena, joint(&arena, kept, &activated), &refind);
        let tracked_ids: HashSet<u64> = tracked.iter().map(|&i| arena[i].id).collect();
        let mut lost = sub(&arena, &lost_list, &tracked_ids);
        lost.extend(lost_now);
        let removed_ids: HashSet<u64> = self.removed.iter().copied().collect();
        let lost = sub(&arena, &lost, &removed_ids);
        let (tracked, lost) = remove_duplicates(&arena, tracked, lost);
        self.removed.extend(removed_now);
        while self.removed.len() > REMOVED_BUFFER {
            self.removed.pop_front();
        }

        let mut slots: Vec<Option<STrack>> = arena.into_iter().map(Some).collect();
        let mut take = |i: usize| slots[i].take().expect("each track is in one list");
        self.tracked = tracked.into_iter().map(&mut take).collect();
        self.lost = lost.into_iter().map(&mut take).collect();
        self.tracked
            .iter()
            .filter(|t| t.activated)
            .map(|t| Track {
                id: t.id,
                xyxy: t.xyxy(),
                score: t.score,
                class: t.class,
                index: t.index,
            })
            .collect()
    }
}

fn distances(arena: &[STrack], tracks: &[usize], dets: &[STrack], fuse: bool) -> Vec<f32> {
    let a: Vec<[f32; 4]> = tracks.iter().map(|&i| arena[i].xyxy()).collect();
    let b: Vec<[f32; 4]> = dets.iter().map(STrack::xyxy).collect();
    let mut d = iou_distance(&a, &b);
    if fuse {
        fuse_score(&mut d, &dets.iter().map(|t| t.score).collect::<Vec<_>>());
    }
    d
}

/// `remove_duplicate_stracks`: of a tracked and a lost track overlapping by IoU > 0.85, the one
/// tracked for fewer frames goes.
fn remove_duplicates(arena: &[STrack], a: Vec<usize>, b: Vec<usize>) -> (Vec<usize>, Vec<usize>) {
    let boxes = |list: &[usize]| list.iter().map(|&i| arena[i].xyxy()).collect::<Vec<_>>();
    let d = iou_distance(&boxes(&a), &boxes(&b));
    let (mut drop_a, mut drop_b) = (HashSet::new(), HashSet::new());
    for (p, &ia) in a.iter().enumerate() {
        for (q, &ib) in b.iter().enumerate() {
            if d[p * b.len() + q] < 0.15 {
                let age = |t: &STrack| t.frame - t.start;
                if age(&arena[ia]) > age(&arena[ib]) {
                    drop_b.insert(q);
                } else {
                    drop_a.insert(p);
                }
            }
        }
    }
    let keep = |list: Vec<usize>, drop: &HashSet<usize>| {
        list.into_iter()
            .enumerate()
            .filter(|(k, _)| !drop.contains(k))
            .map(|(_, i)| i)
            .collect()
    };
    (keep(a, &drop_a), keep(b, &drop_b))
}

use std::fmt;
use std::path::{Path, PathBuf};

/// One box of a label file: class and normalised `[cx, cy, w, h]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Label {
    /// Class index.
    pub class: usize,
    /// Normalised `[cx, cy, w, h]`.
    pub bbox: [f32; 4],
}

/// Something wrong in a dataset, with where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The file concerned.
    pub path: PathBuf,
    /// 1-based line, when the problem is one line.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

/// Parses a YOLO label file. Lines are `class cx cy w h` (more values: a polygon, boxed by its
/// extent, as ultralytics does); blank lines are skipped; exact duplicate rows are dropped.
/// Problems (malformed number, class ≥ `nc`, coordinate outside [0, 1], zero-size box) are
/// returned with their line; ultralytics then skips the whole image, and so do callers here.
pub fn parse_labels(path: &Path, text: &str, nc: usize) -> (Vec<Label>, Vec<Problem>) {
    let mut labels = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let problem = |message: String| Problem {
            path: path.to_path_buf(),
            line: Some(i + 1),
            message,
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let values: Result<Vec<f32>, _> = fields.iter().map(|f| f.parse::<f32>()).collect();
        let Ok(values) = values else {
            problems.push(problem(format!("malformed line {line:?}")));
            continue;
        };
        if values.len() < 5 || (values.len() > 5 && values.len() % 2 == 0) {
            problems.push(problem(format!(
                "expected `class cx cy w h` (or a polygon), got {} values",
                values.len()
            )));
            continue;
        }
        let class = values[0];
        if class < 0.0 || class.fract() != 0.0 || class as usize >= nc {
            problems.push(problem(format!(
                "class {class} is not one of the {nc} classes"
            )));
            continue;
        }
        let coords = &values[1..];
        if let Some(bad) = coords.iter().find(|v| !(0.0..=1.0).contains(*v)) {
            problems.push(problem(format!(
                "coordinate {bad} outside [0, 1] (labels must be normalised)"
            )));
            continue;
        }
        let bbox = if coords.len() == 4 {
            [coords[0], coords[1], coords[2], coords[3]]
        } else {
            let xs = coords.iter().step_by(2);
            let ys = coords.iter().skip(1).step_by(2);
            let (x0, x1) = xs.fold((1f32, 0f32), |(lo, hi), &x| (lo.min(x), hi.max(x)));
            let (y0, y1) = ys.fold((1f32, 0f32), |(lo, hi), &y| (lo.min(y), hi.max(y)));
            [(x0 + x1) / 2.0, (y0 + y1) / 2.0, x1 - x0, y1 - y0]
        };
        if bbox[2] <= 0.0 || bbox[3] <= 0.0 {
            problems.push(problem("box of zero width or height".into()));
            continue;
        }
        let label = Label {
            class: class as usize,
            bbox,
        };
        if !labels.contains(&label) {
            labels.push(label);
        }
    }
    (labels, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_bad_and_polygons() {
        let text = "0 0.5 0.5 0.2 0.2\n\n2 0.1 0.1 0.9 0.1 0.9 0.9\n0 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.1 0.1\n1 1.2 0.5 0.1 0.1\n1 a b c d\n1 0.5 0.5 0.1\n";
        let (labels, problems) = parse_labels(Path::new("l.txt"), text, 3);
        assert_eq!(labels.len(), 2, "duplicate dropped");
        assert_eq!(labels[1].class, 2);
        assert!((labels[1].bbox[0] - 0.5).abs() < 1e-6 && (labels[1].bbox[2] - 0.8).abs() < 1e-6);
        let lines: Vec<Option<usize>> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [Some(5), Some(6), Some(7), Some(8)]);
        assert!(
            problems[0].to_string().starts_with("l.txt:5: class 3"),
            "{}",
            problems[0]
        );
        assert!(problems[1].message.contains("outside [0, 1]"));
    }
}

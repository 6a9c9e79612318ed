use std::fmt;
use std::str::FromStr;

/// The four EfficientNetV2 sizes the detector comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// efficientnet_v2_s
    S,
    /// efficientnet_v2_m
    M,
    /// efficientnet_v2_l
    L,
    /// efficientnet_v2_xl
    Xl,
}

impl Variant {
    /// All variants, smallest first.
    pub const ALL: [Variant; 4] = [Variant::S, Variant::M, Variant::L, Variant::Xl];

    /// The backbone's structure table.
    pub fn backbone(self) -> effnetv2::Config {
        match self {
            Variant::S => effnetv2::Config::s(),
            Variant::M => effnetv2::Config::m(),
            Variant::L => effnetv2::Config::l(),
            Variant::Xl => effnetv2::Config::xl(),
        }
    }

    /// The short name, `s`, `m`, `l` or `xl`.
    pub fn name(self) -> &'static str {
        match self {
            Variant::S => "s",
            Variant::M => "m",
            Variant::L => "l",
            Variant::Xl => "xl",
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Variant {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Variant::ALL
            .into_iter()
            .find(|v| v.name() == s.to_ascii_lowercase())
            .ok_or_else(|| crate::Error::UnknownVariant(s.to_string()))
    }
}

use anyhow::{bail, Context};
use candle::Device;

/// `--device auto|cpu|cuda[:N]`: `auto` takes the first GPU when this build has CUDA and one is
/// present, else the CPU.
pub fn parse(spec: &str) -> anyhow::Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(Device::cuda_if_available(0).unwrap_or(Device::Cpu)),
        "cuda" => cuda(0),
        other => match other.strip_prefix("cuda:") {
            Some(n) => cuda(
                n.parse()
                    .with_context(|| format!("--device {other}: {n:?} is not a GPU index"))?,
            ),
            None => bail!("--device {other}: expected auto, cpu, cuda or cuda:N"),
        },
    }
}

fn cuda(ordinal: usize) -> anyhow::Result<Device> {
    if !candle::utils::cuda_is_available() {
        bail!("--device cuda:{ordinal}: this rtdetr was built without CUDA (rebuild with --features cuda)")
    }
    Device::new_cuda(ordinal).with_context(|| format!("opening GPU {ordinal}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert!(parse("cpu").unwrap().is_cpu());
        assert!(parse("auto").is_ok());
        assert!(parse("gpu").is_err());
        assert!(parse("cuda:x").is_err());
        if !candle::utils::cuda_is_available() {
            assert!(parse("cuda:0")
                .unwrap_err()
                .to_string()
                .contains("without CUDA"));
        }
    }
}

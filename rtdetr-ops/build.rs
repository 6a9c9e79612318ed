//! With the `cuda` feature, compiles `kernels/*.cu` to PTX with nvcc (as candle-kernels does, via
//! cudaforge; `CUDA_COMPUTE_CAP` picks the architecture) and writes `$OUT_DIR/ptx.rs` with one
//! `&str` constant per `.cu` file (they include the shared `kernels/common.cuh`). Without it, does
//! nothing.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    #[cfg(feature = "cuda")]
    {
        println!("cargo::rerun-if-changed=kernels");
        let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
        let ptx = cudaforge::KernelBuilder::new()
            .source_dir("kernels")
            .arg("-std=c++17")
            .arg("-O3")
            .build_ptx()
            .unwrap_or_else(|e| panic!("compiling rtdetr-ops/kernels with nvcc: {e}"));
        ptx.write(out.join("ptx.rs"))
            .unwrap_or_else(|e| panic!("writing ptx.rs: {e}"));
    }
}

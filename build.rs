//! Compiles the v1 API from `proto/` with the protoc shipped by `protoc-bin-vendored` (no
//! system protoc needed), and writes the descriptor set that server reflection serves.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let mut protos: Vec<_> = std::fs::read_dir("proto/certseal/v1")?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    protos.sort();
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let includes = [
        std::path::PathBuf::from("proto"),
        protoc_bin_vendored::include_path()?,
    ];
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("certseal_descriptor.bin"))
        .compile_with_config(config, &protos, &includes)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}

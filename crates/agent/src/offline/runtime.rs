//! The process's one ONNX Runtime, loaded at run time from the assets (the `ort` crate with
//! `load-dynamic`: nothing is linked or downloaded at build time).

use std::path::Path;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

use crate::provider::ProviderError;

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

/// ONNX Runtime allows one environment per process; the first caller's library wins.
pub(crate) fn environment(library: &Path) -> Result<&'static Environment, ProviderError> {
    let result = ENVIRONMENT.get_or_init(|| {
        let builder = ort::init_from(library).map_err(|e| format!("load {}: {e}", library.display()))?;
        builder.with_name("uponai").with_telemetry(false).build().map_err(|e| e.to_string())
    });
    result.as_ref().map_err(|message| ProviderError::failed("onnxruntime", message))
}

/// A session that runs on its caller's thread: one intra-op thread, no spinning (spinning
/// pools burn a core between calls on a 2-core machine).
pub(crate) fn session(environment: &Environment, model: &Path) -> Result<Session, ProviderError> {
    let fail = |e: &dyn std::fmt::Display| ProviderError::failed("onnxruntime", format!("{}: {e}", model.display()));
    Session::builder(environment)
        .map_err(|e| fail(&e))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| fail(&e))?
        .with_intra_threads(1)
        .map_err(|e| fail(&e))?
        .with_inter_threads(1)
        .map_err(|e| fail(&e))?
        .with_parallel_execution(false)
        .map_err(|e| fail(&e))?
        .with_intra_op_spinning(false)
        .map_err(|e| fail(&e))?
        .with_inter_op_spinning(false)
        .map_err(|e| fail(&e))?
        .commit_from_file(model)
        .map_err(|e| fail(&e))
}

//! Reading the TOML file into a layer of [`ServeArgs`], with errors that
//! name the key and the line.

use std::path::Path;

use super::{invalid, ConfigError, ServeArgs};

/// The file at `path` as a layer; model paths made relative to the file.
pub(super) fn read(path: &Path) -> Result<ServeArgs, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid("config", format!("cannot read {}: {e}", path.display())))?;
    let mut layer: ServeArgs = toml::from_str(&text).map_err(|e| {
        let (line, key) = match e.span() {
            Some(span) => locate(&text, span.start),
            None => (0, String::new()),
        };
        let key = if key.is_empty() { "config".into() } else { key };
        invalid(
            &key,
            format!("{} (in {} line {line})", e.message().trim(), path.display()),
        )
    })?;
    if let Some(base) = path.parent() {
        for model in &mut layer.models {
            for file in std::iter::once(&mut model.path).chain(model.tokenizer.as_mut()) {
                if file.is_relative() {
                    *file = base.join(&*file);
                }
            }
        }
    }
    Ok(layer)
}

/// Line number (1-based) of `offset` and the key written on that line.
fn locate(text: &str, offset: usize) -> (usize, String) {
    let before = &text[..offset.min(text.len())];
    let line_no = before.matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("");
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().to_string())
        .unwrap_or_default();
    (line_no, key)
}

//! Files of a test's own (token files, environment files), under the
//! temporary directory and removed on drop.

use std::path::{Path, PathBuf};

/// A folder of its own, removed with everything in it on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("bc-{what}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Write `name` in the folder (replacing it at once, as an editor or a
    /// configuration tool does: write, then rename); its path as a string.
    pub fn write(&self, name: &str, content: &str) -> String {
        let path = self.0.join(name);
        let temp = self.0.join(format!(".{name}.new"));
        std::fs::write(&temp, content).unwrap();
        std::fs::rename(&temp, &path).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

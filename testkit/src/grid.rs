//! Grid files for tests. Every test grid starts from the same tiny job (one conv layer of
//! width 1 on 20 MNIST images, epochs 0 and 1 measured on the test split) and states only
//! what it changes, so the parameter names live in the grid parser and here, nowhere else.

use std::fmt::Display;
use std::path::{Path, PathBuf};

/// Keys with their YAML values, in the order first set; setting a key again replaces it in
/// place so the text reads like a hand-written grid.
#[derive(Debug, Clone, Default)]
struct Section(Vec<(String, String)>);

impl Section {
    fn set(&mut self, key: &str, value: String) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key.to_string(), value)),
        }
    }

    fn flow(&self) -> String {
        let items: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        format!("{{{}}}", items.join(", "))
    }
}

/// Builds a grid file's text.
///
/// ```
/// let grid = ibsweep_testkit::GridBuilder::tiny("demo").values("width", [1, 2]).limit("max_attempts", 2).build();
/// assert!(grid.contains("width: {values: [1, 2]}"));
/// ```
#[derive(Debug, Clone)]
pub struct GridBuilder {
    name: String,
    parameters: Section,
    measure: Section,
    train: Section,
    limits: Section,
}

impl GridBuilder {
    /// The smallest job that runs the whole pipeline: mnist, width 1, depth 1, kernel 3,
    /// one epoch (so epochs 0 and 1 are measured), test split of 20 images, batch 10.
    pub fn tiny(name: &str) -> GridBuilder {
        let mut grid = GridBuilder {
            name: name.to_string(),
            parameters: Section::default(),
            measure: Section::default(),
            train: Section::default(),
            limits: Section::default(),
        };
        grid = grid.param("dataset", "mnist").param("width", 1).param("depth", 1).param("kernel", 3).param("epochs", 1);
        grid = grid.measure("epochs", "every").measure("splits", "[test]").measure("bin_sizes", "[0.67]");
        grid.train("train_size", 20).train("test_size", 20).train("batch_size", 10)
    }

    /// `parameters.KEY: {value: VALUE}`.
    pub fn param(mut self, key: &str, value: impl Display) -> GridBuilder {
        self.parameters.set(key, format!("{{value: {value}}}"));
        self
    }

    /// `parameters.KEY: {values: [V1, V2, ...]}`.
    pub fn values<T: Display>(mut self, key: &str, values: impl IntoIterator<Item = T>) -> GridBuilder {
        let items: Vec<String> = values.into_iter().map(|v| v.to_string()).collect();
        self.parameters.set(key, format!("{{values: [{}]}}", items.join(", ")));
        self
    }

    /// `measure.KEY: VALUE`, the value as YAML text (`every`, `[0, 5]`, `[train, test]`).
    pub fn measure(mut self, key: &str, yaml: impl Display) -> GridBuilder {
        self.measure.set(key, yaml.to_string());
        self
    }

    /// `train.KEY: VALUE`, the value as YAML text.
    pub fn train(mut self, key: &str, yaml: impl Display) -> GridBuilder {
        self.train.set(key, yaml.to_string());
        self
    }

    /// `limits.KEY: VALUE`.
    pub fn limit(mut self, key: &str, yaml: impl Display) -> GridBuilder {
        self.limits.set(key, yaml.to_string());
        self
    }

    /// The grid file's text.
    pub fn build(&self) -> String {
        let mut out = format!("name: {}\nparameters:\n", self.name);
        for (key, value) in &self.parameters.0 {
            out += &format!("  {key}: {value}\n");
        }
        out += &format!("measure: {}\ntrain: {}\n", self.measure.flow(), self.train.flow());
        if !self.limits.0.is_empty() {
            out += &format!("limits: {}\n", self.limits.flow());
        }
        out
    }

    /// Writes the grid to `dir/NAME.yaml` and returns the path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("{}.yaml", self.name));
        std::fs::write(&path, self.build()).unwrap();
        path
    }
}

#[cfg(test)]
mod tests {
    use super::GridBuilder;

    #[test]
    fn the_tiny_grid_reads_like_a_hand_written_one() {
        let text = GridBuilder::tiny("t").values("width", [1, 2]).param("seed", 3).limit("max_attempts", 2).build();
        assert_eq!(
            text,
            "name: t\nparameters:\n  dataset: {value: mnist}\n  width: {values: [1, 2]}\n  depth: {value: 1}\n  kernel: {value: 3}\n  epochs: {value: 1}\n  seed: {value: 3}\nmeasure: {epochs: every, splits: [test], bin_sizes: [0.67]}\ntrain: {train_size: 20, test_size: 20, batch_size: 10}\nlimits: {max_attempts: 2}\n"
        );
    }
}

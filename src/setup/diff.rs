//! A small unified line diff for `mighook setup --dry-run`.
//!
//! Longest common subsequence over lines, printed as `@@ -a,b +c,d @@` hunks
//! with two lines of context. Config files are short; quadratic is fine, and
//! files too large for it are shown whole instead.

use std::fmt::Write as _;

const CONTEXT: usize = 2;
/// Above this many line pairs the diff is skipped and the new file shown whole.
const MAX_CELLS: usize = 4_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Same,
    Del,
    Add,
}

/// Line operations turning `a` into `b`.
fn ops(a: &[&str], b: &[&str]) -> Vec<Op> {
    let (n, m) = (a.len(), b.len());
    // lcs[i][j]: LCS length of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::with_capacity(n + m));
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push(Op::Same);
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Deletions first, as diff(1) prints them.
            out.push(Op::Del);
            i += 1;
        } else {
            out.push(Op::Add);
            j += 1;
        }
    }
    out
}

/// Unified diff of `old` → `new` (without file headers). Empty when equal.
pub fn unified(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if a == b {
        return String::new();
    }
    if a.len().saturating_mul(b.len()) > MAX_CELLS {
        return new.lines().map(|l| format!("+{l}\n")).collect();
    }
    let ops = ops(&a, &b);
    // Position in a and b before each op.
    let mut pos = Vec::with_capacity(ops.len() + 1);
    let (mut i, mut j) = (0, 0);
    for op in &ops {
        pos.push((i, j));
        match op {
            Op::Same => (i, j) = (i + 1, j + 1),
            Op::Del => i += 1,
            Op::Add => j += 1,
        }
    }
    pos.push((i, j));
    let changed: Vec<usize> = (0..ops.len()).filter(|k| ops[*k] != Op::Same).collect();
    let mut out = String::new();
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(CONTEXT);
        let mut end = changed[k];
        while k < changed.len() && changed[k] <= end + 2 * CONTEXT + 1 {
            end = changed[k];
            k += 1;
        }
        let end = (end + CONTEXT + 1).min(ops.len());
        let (a0, b0) = pos[start];
        let (a1, b1) = pos[end];
        // An empty side starts at the line before it, as in diff(1).
        let first = |at: usize, len: usize| if len == 0 { at } else { at + 1 };
        let _ = writeln!(out, "@@ -{},{} +{},{} @@", first(a0, a1 - a0), a1 - a0, first(b0, b1 - b0), b1 - b0);
        for (op, (i, j)) in ops[start..end].iter().zip(&pos[start..end]) {
            let _ = match op {
                Op::Same => writeln!(out, " {}", a[*i]),
                Op::Del => writeln!(out, "-{}", a[*i]),
                Op::Add => writeln!(out, "+{}", b[*j]),
            };
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(unified("a\nb\n", "a\nb\n"), "");
    }

    #[test]
    fn one_added_line_with_context() {
        let old = "1\n2\n3\n4\n5\n6\n7\n";
        let new = "1\n2\n3\n4\nnew\n5\n6\n7\n";
        assert_eq!(unified(old, new), "@@ -3,4 +3,5 @@\n 3\n 4\n+new\n 5\n 6\n");
    }

    #[test]
    fn a_changed_line_is_a_delete_and_an_add() {
        assert_eq!(unified("a\nb\nc\n", "a\nB\nc\n"), "@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n");
    }

    #[test]
    fn far_apart_changes_make_two_hunks() {
        let old: String = (0..20).map(|i| format!("{i}\n")).collect();
        let new = old.replace("2\n", "two\n").replace("17\n", "seventeen\n");
        let d = unified(&old, &new);
        assert_eq!(d.matches("@@ -").count(), 2, "{d}");
        assert!(d.contains("-17\n+seventeen\n"));
    }

    #[test]
    fn a_new_file_is_all_additions() {
        assert_eq!(unified("", "x\ny\n"), "@@ -0,0 +1,2 @@\n+x\n+y\n");
    }
}

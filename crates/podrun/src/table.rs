//! kubectl's table layout: columns separated by at least three spaces, each as wide as
//! its widest cell (Go's `tabwriter` with padding 3, as kubectl configures it).

/// Formats rows (the first is usually the header) into aligned lines.
pub fn render(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count() + 3;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_to_the_widest_cell_plus_three() {
        let rows = vec![
            vec!["NAME".to_string(), "READY".into(), "STATUS".into()],
            vec!["exiting-pod".to_string(), "0/2".into(), "Init:0/2".into()],
        ];
        assert_eq!(
            render(&rows),
            "NAME          READY   STATUS\nexiting-pod   0/2     Init:0/2\n"
        );
    }
}

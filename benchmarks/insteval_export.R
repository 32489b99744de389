# Export lme4's InstEval data set to CSV for benchmarks/crossed_benchmark.py.
#
#   Rscript benchmarks/insteval_export.R [--out /tmp/insteval.csv]
#
# The data are lme4's (73,421 course evaluations; 2,972 students s, 1,128 instructors d,
# 14 departments dept, service: whether the instructor taught a service course). They are not
# committed to the repository: the benchmark reads the CSV from the path given to it.
args <- commandArgs(trailingOnly = TRUE)
out <- "/tmp/insteval.csv"
if (length(args) >= 2 && args[1] == "--out") out <- args[2]
suppressPackageStartupMessages(library(lme4))
data("InstEval", package = "lme4")
d <- InstEval
write.csv(data.frame(s = as.character(d$s), d = as.character(d$d), dept = as.character(d$dept),
                     service = as.character(d$service), studage = as.character(d$studage),
                     lectage = as.character(d$lectage), y = d$y),
          out, row.names = FALSE)
cat(sprintf("wrote %d rows to %s\n", nrow(d), out))

# lme4's REML fit of a crossed model, timed, for benchmarks/crossed_benchmark.py (which runs
# this script with Rscript in the same session and reads the JSON it prints).
#
#   Rscript benchmarks/crossed_lme4.R DATA.csv "FORMULA" [REPEATS]
#
# Prints one JSON object: lme4's version, the median elapsed and CPU seconds of lmer() (the data
# already read), the elapsed seconds of read.csv + lmer() (end to end), the REML criterion, θ and the number of evaluations.
args <- commandArgs(trailingOnly = TRUE)
path <- args[1]
form <- as.formula(args[2])
repeats <- if (length(args) >= 3) as.integer(args[3]) else 1L
suppressPackageStartupMessages(library(lme4))
classes <- c(s = "factor", d = "factor", dept = "factor", service = "factor")
read <- function() read.csv(path, colClasses = classes)
data <- read()
fit_times <- numeric(repeats)
cpu_times <- numeric(repeats)
for (r in seq_len(repeats)) {
  used <- system.time(fit <- lmer(form, data = data, REML = TRUE))
  fit_times[r] <- used[["elapsed"]]
  cpu_times[r] <- used[["user.self"]] + used[["sys.self"]]
}
end_to_end <- system.time(lmer(form, data = read(), REML = TRUE))[["elapsed"]]
cat(sprintf(
  '{"lme4": "%s", "R": "%s", "fit_seconds": %.4f, "fit_cpu_seconds": %.4f, "end_to_end_seconds": %.4f, "criterion": %.6f, "theta": [%s], "evaluations": %d, "optimizer": "%s"}\n',
  as.character(packageVersion("lme4")), paste(R.version$major, R.version$minor, sep = "."),
  median(fit_times), median(cpu_times), end_to_end, REMLcrit(fit), paste(sprintf("%.8f", getME(fit, "theta")), collapse = ", "),
  as.integer(fit@optinfo$feval), fit@optinfo$optimizer
))

# lme4 (and glmmTMB) fit times for benchmarks/glmm_benchmark.py, on the same data in the same run.
#
#   Rscript benchmarks/glmm_lme4.R MODEL CSV REPEAT
#
# MODEL is one of the benchmark's cases (cbpp_binomial, cbpp_binomial_agq25,
# grouseticks_poisson, poisson_offset, salamanders_nbinom2, bernoulli_large), CSV the path of
# its data and REPEAT the number of timed fits. Prints one JSON object: for each fitting
# function, the median elapsed time of REPEAT fits (system.time) and the log-likelihood of
# the last fit. Default controls throughout (glmerControl(), glmmTMBControl()), as in the
# reference JSON. Loading the packages and reading the CSV are not timed.
suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
model <- args[1]
data <- read.csv(args[2])
repeats <- as.integer(args[3])

timed <- function(fit) {
  times <- numeric(repeats)
  for (i in seq_len(repeats)) {
    times[i] <- system.time(result <- fit())[["elapsed"]]
  }
  list(fit_time_s = median(times), logLik = as.numeric(logLik(result)))
}

factors <- function(columns) {
  for (column in columns) data[[column]] <<- factor(data[[column]])
}

out <- switch(model,
  cbpp_binomial = {
    factors(c("herd", "period"))
    list(glmer = timed(function() glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data, family = binomial)))
  },
  cbpp_binomial_agq25 = {
    factors(c("herd", "period"))
    list(glmer = timed(function() glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data, family = binomial, nAGQ = 25)))
  },
  grouseticks_poisson = {
    factors(c("INDEX", "BROOD", "LOCATION", "YEAR"))
    list(glmer = timed(function() glmer(TICKS ~ YEAR + HEIGHT_scaled + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION), data, family = poisson)))
  },
  poisson_offset = {
    factors("g")
    list(glmer = timed(function() glmer(y ~ x + offset(log(t)) + (1 | g), data, family = poisson)))
  },
  salamanders_nbinom2 = {
    suppressPackageStartupMessages(library(glmmTMB))
    data$mined <- factor(data$mined, levels = c("yes", "no"))
    factors("site")
    list(glmmTMB = timed(function() glmmTMB(count ~ mined + (1 | site), data, family = nbinom2)),
         glmer.nb = timed(function() suppressWarnings(glmer.nb(count ~ mined + (1 | site), data))))
  },
  bernoulli_large = {
    factors("g")
    list(glmer = timed(function() glmer(y ~ x + (x | g), data, family = binomial)))
  },
  stop("unknown model ", model)
)
cat(toJSON(out, auto_unbox = TRUE, digits = NA), "\n")

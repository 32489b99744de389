# Regenerates conditional_effects.json: Rscript make_conditional_effects.R > conditional_effects.json
# References for bayesmix.conditional_effects on the music data (../../../shared/data/musicdata.csv,
# located relative to this script): emmeans's estimated marginal means at each performance type,
# `previous` held at its mean, with asymptotic (normal) confidence intervals from vcov(beta):
# a linear mixed model by REML, and a logistic GLMM by the Laplace approximation with the
# intervals back-transformed to probabilities (type = "response").
suppressMessages({library(lme4); library(emmeans); library(jsonlite)})
here <- dirname(normalizePath(sub("--file=", "", grep("--file=", commandArgs(FALSE), value = TRUE))))
music <- read.csv(file.path(here, "../../../shared/data/musicdata.csv"))
music$high_anxiety <- as.integer(music$na > 20)
grid <- function(m, type) {
  e <- as.data.frame(summary(emmeans(m, ~ perform_type, lmer.df = "asymptotic", type = type), infer = TRUE))
  estimate <- if ("prob" %in% names(e)) e$prob else e$emmean
  list(levels = as.character(e$perform_type), estimate = estimate, lower = e$asymp.LCL, upper = e$asymp.UCL)
}
reml <- lmer(na ~ perform_type + previous + (perform_type | id), data = music,
             control = lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e6)))
# glmer's default control: with a tighter bobyqa its finite-difference Hessian is not positive
# definite here and vcov() falls back to RX; the default fit's Hessian is fine
logit <- glmer(high_anxiety ~ perform_type + previous + (1 | id), data = music, family = binomial)
out <- list(
  music_reml = c(list(formula = "na ~ perform_type + previous + (perform_type | id)",
                      previous_mean = mean(music$previous)), grid(reml, "link")),
  music_logit_ml = c(list(formula = "high_anxiety ~ perform_type + previous + (1 | id)",
                          previous_mean = mean(music$previous)), grid(logit, "response")),
  versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                  emmeans = as.character(packageVersion("emmeans")))
)
cat(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "\n")

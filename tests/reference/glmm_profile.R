# Reference numbers for bayesmix's profile-likelihood intervals of GLMM fits (issue 16):
# lme4's confint(fit, method = "profile") for glmer fits (the Laplace deviance, and nAGQ = 25 for cbpp).
#
#   cd tests/reference && Rscript glmm_profile.R
#
# writes glmm_profile.json and the simulated data set data/glmm_slopes.csv (a binomial model
# with a correlated random intercept and slope). It reads cbpp and grouseticks from
# ../../../shared/reference/glmm/, relative to this script.
#
# Every fit uses tolPwrss = 1e-12: with glmer's default (1e-7) PIRLS stops early, the estimates
# stop up to 5e-4 short of the optimum (../../../shared/reference/glmm/glmm_reference.json,
# crosscheck) and the profile's base deviance is not its minimum. For cbpp the intervals of the
# default fit are kept too (cbpp_default_control), to show how little that moves them.
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("--file=", "", args[grep("--file=", args)])))
glmm_dir <- file.path(here, "..", "..", "..", "shared", "reference", "glmm")

tight <- glmerControl(tolPwrss = 1e-12)

describe <- function(name, formula, fit) {
  ci <- confint(fit, method = "profile", level = 0.95)
  list(name = name, formula = formula, family = family(fit)$family, nAGQ = fit@devcomp$dims[["nAGQ"]],
       theta = as.numeric(getME(fit, "theta")), fixef = as.list(fixef(fit)),
       logLik = as.numeric(logLik(fit)),
       parameters = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2]))
}

cbpp <- read.csv(file.path(glmm_dir, "cbpp.csv"), colClasses = c(herd = "character", period = "character"))
f_cbpp <- "cbind(incidence, size - incidence) ~ period + (1 | herd)"
models <- list(
  describe("cbpp", f_cbpp, glmer(as.formula(f_cbpp), data = cbpp, family = binomial, control = tight)),
  describe("cbpp_default_control", f_cbpp, glmer(as.formula(f_cbpp), data = cbpp, family = binomial)),
  # adaptive Gauss-Hermite quadrature: the profile is of the nAGQ = 25 deviance
  describe("cbpp_agq25", f_cbpp, glmer(as.formula(f_cbpp), data = cbpp, family = binomial, nAGQ = 25, control = tight))
)

ticks <- read.csv(file.path(glmm_dir, "grouseticks.csv"),
                  colClasses = c(INDEX = "character", BROOD = "character", YEAR = "character", LOCATION = "character"))
f_ticks <- "TICKS ~ YEAR + (1 | BROOD)"
models[[4]] <- describe("grouseticks", f_ticks, glmer(as.formula(f_ticks), data = ticks, family = poisson, control = tight))
# two grouping factors (broods within locations): the profile of sd(LOCATION) stays below the
# cutoff down to 0, so its lower limit is the bound
f_ticks2 <- "TICKS ~ YEAR + HEIGHT_scaled + (1 | BROOD) + (1 | LOCATION)"
models[[5]] <- describe("grouseticks_two_factors", f_ticks2,
                        glmer(as.formula(f_ticks2), data = ticks, family = poisson, control = tight))

# a correlated random intercept and slope: 30 groups of 12 binomial rows (5-15 trials)
set.seed(16)
G <- 30; per <- 12
g <- rep(sprintf("g%02d", 1:G), each = per)
x <- round(rnorm(G * per), 4)
L <- chol(matrix(c(0.8^2, 0.4 * 0.8 * 0.5, 0.4 * 0.8 * 0.5, 0.5^2), 2))
b <- matrix(rnorm(G * 2), G) %*% L
size <- sample(5:15, G * per, replace = TRUE)
level <- match(g, unique(g))
k <- rbinom(G * per, size, plogis(-0.5 + 0.7 * x + b[level, 1] + b[level, 2] * x))
slopes <- data.frame(k = k, size = size, x = x, g = g)
write.csv(slopes, file.path(here, "data", "glmm_slopes.csv"), row.names = FALSE)
slopes <- read.csv(file.path(here, "data", "glmm_slopes.csv"))  # the values as written
f_slopes <- "cbind(k, size - k) ~ x + (x | g)"
models[[6]] <- describe("slopes", f_slopes, glmer(as.formula(f_slopes), data = slopes, family = binomial, control = tight))

# a singular fit: Bernoulli rows with no group effect, whose sd(g) is estimated at 0 (the lower
# limit is the bound 0, the upper one where the profile from 0 reaches z)
set.seed(19)  # the first seed from 17 whose fit is exactly singular (theta = 0)
n <- 300
singular <- data.frame(x = round(rnorm(n), 4), g = sprintf("g%02d", sample(1:20, n, replace = TRUE)))
singular$y <- rbinom(n, 1, plogis(0.2 + 0.5 * singular$x))
write.csv(singular, file.path(here, "data", "glmm_singular.csv"), row.names = FALSE)
singular <- read.csv(file.path(here, "data", "glmm_singular.csv"))
f_singular <- "y ~ x + (1 | g)"
fit <- glmer(as.formula(f_singular), data = singular, family = binomial, control = tight)
stopifnot(getME(fit, "theta") == 0)
models[[7]] <- describe("singular", f_singular, fit)

out <- list(versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4"))),
            note = paste("confint(fit, method = 'profile'): rows .sig01.. (SDs and correlations in theta's order),",
                         "then the fixed effects; lme4 interpolates a spline through its profile points."),
            models = models)
writeLines(toJSON(out, digits = NA, pretty = TRUE, auto_unbox = TRUE), file.path(here, "glmm_profile.json"))

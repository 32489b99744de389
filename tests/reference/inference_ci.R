# Regenerates inference_ci.json: Rscript inference_ci.R  (run from anywhere; paths are relative to
# this script). lme4's confint.merMod (Wald, profile, parametric bootstrap percentile) on the music,
# sleepstudy and a crossed model (data/crossed.csv, see README.md), and pbkrtest's PBmodcomp of a
# random slope against a random intercept on the music data. The bootstrap draws are written whole,
# so that the tests can derive the Monte Carlo error of lme4's percentiles from them.
suppressMessages({library(lme4); library(jsonlite); library(pbkrtest)})
here <- dirname(normalizePath(sub("--file=", "", grep("--file=", commandArgs(FALSE), value = TRUE))))
music <- read.csv(file.path(here, "..", "..", "..", "shared", "data", "musicdata.csv"))
sleep <- read.csv(file.path(here, "..", "..", "..", "shared", "data", "sleepstudy.csv"))
sleep$Subject <- factor(sleep$Subject)
crossed <- read.csv(file.path(here, "data", "crossed.csv"))
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e6))
NSIM <- 500
table_of <- function(ci) lapply(seq_len(nrow(ci)), function(i)
  list(parameter = rownames(ci)[i], lower = unname(ci[i, 1]), upper = unname(ci[i, 2])))
describe <- function(name, formula, data) {
  m <- lmer(formula, data = data, REML = TRUE, control = ctrl)
  ml <- refitML(m)
  wald <- confint(m, method = "Wald", oldNames = FALSE)
  prof <- confint(m, method = "profile", oldNames = FALSE)
  boot_fun <- function(x) c(getME(x, "theta"), sigma = sigma(x), fixef(x))
  t0 <- Sys.time()
  bt <- bootMer(m, function(x) {
      vc <- as.data.frame(VarCorr(x), order = "lower.tri")
      c(setNames(vc$sdcor, seq_along(vc$sdcor)), fixef(x))
    }, nsim = NSIM, seed = 20261126, use.u = FALSE, type = "parametric")
  secs <- as.numeric(Sys.time() - t0, units = "secs")
  boot <- confint(m, method = "boot", nsim = NSIM, oldNames = FALSE, boot.type = "perc",
                  FUN = NULL, seed = 20261126)
  draws <- bt$t
  colnames(draws) <- rownames(boot)
  list(name = name, formula = deparse(formula, width.cutoff = 500L),
       ml_deviance = deviance(ml), reml_criterion = REMLcrit(m),
       wald = table_of(wald), profile = table_of(prof), boot = table_of(boot),
       boot_nsim = NSIM, boot_seconds = secs,
       boot_draws = lapply(seq_len(ncol(draws)), function(j) list(parameter = colnames(draws)[j],
                                                                  values = unname(draws[, j]))),
       level = 0.95)
}
res <- list(
  describe("music", na ~ perform_type + (perform_type | id), music),
  describe("sleep", Reaction ~ Days + (Days | Subject), sleep),
  describe("crossed", y ~ x + (1 | a) + (1 | b), crossed))
large <- lmer(na ~ perform_type + (perform_type | id), data = music, REML = FALSE, control = ctrl)
small <- lmer(na ~ perform_type + (1 | id), data = music, REML = FALSE, control = ctrl)
pb <- PBmodcomp(large, small, nsim = NSIM, seed = 20261126)
pbt <- pb$test
out <- list(models = res,
            pbmodcomp = list(large = "na ~ perform_type + (perform_type | id)", small = "na ~ perform_type + (1 | id)",
                             nsim = NSIM, LRT = pbt["LRT", "stat"], LRT_df = pbt["LRT", "df"],
                             LRT_p = pbt["LRT", "p.value"], PBtest_p = pbt["PBtest", "p.value"],
                             ref = unname(as.numeric(pb$ref))),
            versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                            pbkrtest = as.character(packageVersion("pbkrtest"))))
writeLines(toJSON(out, auto_unbox = TRUE, digits = I(15), pretty = TRUE), file.path(here, "inference_ci.json"))

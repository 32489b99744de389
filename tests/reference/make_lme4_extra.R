# Regenerates lme4_extra.json: Rscript make_lme4_extra.R > lme4_extra.json  (run from this folder
# after `python make_extra_data.py` has written ./data). describe() is the one of
# ../../../shared/reference/make_lme4_reference.R with extra fields appended: vcov, condvar,
# fitted_head, coef (ngrps is already there).
suppressMessages({library(lme4); library(jsonlite)})
here <- dirname(normalizePath(sub("--file=", "", grep("--file=", commandArgs(FALSE), value = TRUE))))
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e6))
# postVar array q x q x nlevels -> list over levels of q x q matrices ([level][row][col] in JSON)
per_level <- function(a) lapply(seq_len(dim(a)[3]), function(k) matrix(a[, , k], dim(a)[1], dim(a)[2]))
describe <- function(name, formula, data, REML = TRUE) {
  m <- lmer(formula, data = data, REML = REML, control = ctrl)
  vc <- as.data.frame(VarCorr(m))
  re <- ranef(m)
  t0 <- Sys.time(); for (i in 1:5) lmer(formula, data = data, REML = REML)
  secs <- as.numeric(Sys.time() - t0, units = "secs") / 5
  recv <- ranef(m, condVar = TRUE)
  list(name = name, formula = deparse(formula, width.cutoff = 500L), REML = REML, nobs = nobs(m),
       ngrps = as.list(ngrps(m)),
       criterion = if (REML) REMLcrit(m) else deviance(m), logLik = as.numeric(logLik(m)),
       AIC = AIC(m), BIC = BIC(m),
       theta = unname(getME(m, "theta")), theta_names = names(getME(m, "theta")),
       fixef = as.list(fixef(m)),
       se = as.list(setNames(sqrt(diag(as.matrix(vcov(m)))), names(fixef(m)))),
       sigma = sigma(m),
       varcorr = lapply(seq_len(nrow(vc)), function(i) list(grp = vc$grp[i], var1 = vc$var1[i],
                        var2 = vc$var2[i], vcov = vc$vcov[i], sdcor = vc$sdcor[i])),
       ranef = lapply(re, function(d) list(levels = rownames(d), columns = colnames(d),
                                           values = unname(as.matrix(d)))),
       singular = isSingular(m), lme4_version = as.character(packageVersion("lme4")),
       lme4_default_fit_seconds = secs,
       # extra fields
       vcov = unname(as.matrix(vcov(m))),
       # one array [level][row][col] per factor; an object {term: [level][row][col]} when lme4
       # returns one postVar array per term (factor in several terms, e.g. (1|g) + (0+x|g))
       condvar = lapply(recv, function(d) {
         pv <- attr(d, "postVar")
         if (is.list(pv)) lapply(pv, per_level) else per_level(pv)
       }),
       fitted_head = unname(head(fitted(m), 10)),
       coef = lapply(coef(m), function(d) list(levels = rownames(d), columns = colnames(d),
                                               values = unname(as.matrix(d)))))
}
crossed <- read.csv(file.path(here, "data", "crossed.csv"))
nested <- read.csv(file.path(here, "data", "nested.csv"))
onefactor <- read.csv(file.path(here, "data", "onefactor.csv"))
music <- read.csv(file.path(here, "..", "..", "..", "shared", "data", "musicdata.csv"))
sleep <- read.csv(file.path(here, "..", "..", "..", "shared", "data", "sleepstudy.csv"))
sleep$Subject <- factor(sleep$Subject)
res <- list(
  describe("crossed_int", y ~ x + (1 | a) + (1 | b), crossed),
  describe("crossed_slope", y ~ x + (x | a) + (1 | b), crossed),
  describe("crossed_slope_ML", y ~ x + (x | a) + (1 | b), crossed, REML = FALSE),
  describe("nested", y ~ x + (1 | school/class), nested),
  describe("nested_colon", y ~ x + (1 | school) + (1 | school:class), nested),
  describe("onefactor_two_terms", y ~ x + z + (1 | g) + (0 + x | g), onefactor),
  describe("onefactor_corr3", y ~ x + z + (x + z | g), onefactor),
  describe("onefactor_uncorr", y ~ x + z + (x + z || g), onefactor),
  describe("intercept_only", y ~ 1 + (1 | g), onefactor),
  describe("music_previous", na ~ previous + perform_type + (previous | id), music),
  describe("sleep_ML", Reaction ~ Days + (Days | Subject), sleep, REML = FALSE))
write(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null", na = "null"), stdout())

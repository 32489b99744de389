# Reference numbers for bayesmix's degrees of freedom, F tests and marginal means (issue 16):
# lmerTest (Satterthwaite), pbkrtest (Kenward-Roger) and emmeans on three models.
#
#   cd tests/reference && Rscript inference_df.R
#
# writes inference_df.json and the simulated crossed data set data/crossed_treatment.csv
# (subjects x items, a three-level treatment varying between items). It reads
# ../../../shared/data/{musicdata,sleepstudy}.csv, relative to this script.
suppressPackageStartupMessages({
  library(lme4); library(lmerTest); library(pbkrtest); library(emmeans); library(jsonlite)
})
args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("--file=", "", args[grep("--file=", args)])))
shared <- file.path(here, "..", "..", "..", "shared", "data")

music <- read.csv(file.path(shared, "musicdata.csv"))[, -1]
music$perform_type <- factor(music$perform_type)  # levels sorted
music$id <- factor(music$id)
sleep <- read.csv(file.path(shared, "sleepstudy.csv"))
sleep$Subject <- factor(sleep$Subject)

# crossed: 24 subjects x 18 items, treatment between items, 10% of trials dropped
set.seed(16)
subjects <- sprintf("s%02d", 1:24); items <- sprintf("i%02d", 1:18)
grid <- expand.grid(subject = subjects, item = items, stringsAsFactors = FALSE)
cond_of_item <- setNames(rep(c("ctrl", "high", "low"), each = 6), items)
grid$cond <- cond_of_item[grid$item]
grid$x <- round(rnorm(nrow(grid)), 4)
u_s <- setNames(rnorm(24, sd = 0.8), subjects); w_s <- setNames(rnorm(24, sd = 0.3), subjects)
u_i <- setNames(rnorm(18, sd = 0.6), items)
effect <- c(ctrl = 0, high = 0.9, low = 0.4)
grid$y <- round(1 + effect[grid$cond] + (0.5 + w_s[grid$subject]) * grid$x + u_s[grid$subject] +
                u_i[grid$item] + rnorm(nrow(grid), sd = 1), 4)
crossed <- grid[sort(sample(nrow(grid), round(0.9 * nrow(grid)))), c("y", "x", "cond", "subject", "item")]
write.csv(crossed, file.path(here, "data", "crossed_treatment.csv"), row.names = FALSE)
crossed <- read.csv(file.path(here, "data", "crossed_treatment.csv"))
crossed$cond <- factor(crossed$cond)

named <- function(v, nm) as.list(setNames(as.numeric(v), nm))
table_of <- function(tab) {
  out <- lapply(seq_len(ncol(tab)), function(j) named(tab[, j], rownames(tab)))
  setNames(out, colnames(tab))
}
emm_of <- function(e) {
  d <- as.data.frame(e)
  lapply(as.list(d), function(col) if (is.factor(col)) as.character(col) else col)
}

models <- list(
  list(name = "music", formula = "na ~ perform_type + (perform_type | id)", data = music,
       emm = "perform_type", L = rbind(c(0, 1, -1), c(1, 0.5, 0.5))),
  list(name = "sleepstudy", formula = "Reaction ~ Days + (Days | Subject)", data = sleep,
       emm = "Days", at = list(Days = c(0, 3, 6, 9)), L = rbind(c(1, 5), c(0, 1))),
  list(name = "crossed", formula = "y ~ cond + x + (x | subject) + (1 | item)", data = crossed,
       emm = "cond", L = rbind(c(0, 1, -1, 0), c(0, 0, 1, 0.5), c(1, 0, 0, 1)))
)

out <- list(versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                            lmerTest = as.character(packageVersion("lmerTest")),
                            pbkrtest = as.character(packageVersion("pbkrtest")),
                            emmeans = as.character(packageVersion("emmeans"))),
            models = list())
for (m in models) {
  res <- list(name = m$name, formula = m$formula)
  for (reml in c(TRUE, FALSE)) {
    fit <- lmerTest::lmer(as.formula(m$formula), data = m$data, REML = reml)
    key <- if (reml) "reml" else "ml"
    r <- list(theta = as.numeric(getME(fit, "theta")), sigma = sigma(fit),
              fixef = named(fixef(fit), names(fixef(fit))),
              satterthwaite = table_of(coef(summary(fit, ddf = "Satterthwaite"))),
              anova_satterthwaite = table_of(anova(fit, type = 3, ddf = "Satterthwaite")),
              L = m$L,
              contest_satterthwaite = table_of(contest(fit, m$L, joint = FALSE, ddf = "Satterthwaite")),
              contest_joint_satterthwaite = table_of(contest(fit, m$L, joint = TRUE, ddf = "Satterthwaite")))
    if (reml) {
      Va <- as.matrix(pbkrtest::vcovAdj(fit))
      r$vcov_kr <- unname(Va)
      r$kenward_roger <- table_of(coef(summary(fit, ddf = "Kenward-Roger")))
      r$anova_kenward_roger <- table_of(anova(fit, type = 3, ddf = "Kenward-Roger"))
      r$contest_kenward_roger <- table_of(contest(fit, m$L, joint = FALSE, ddf = "Kenward-Roger"))
      r$contest_joint_kenward_roger <- table_of(contest(fit, m$L, joint = TRUE, ddf = "Kenward-Roger"))
      kr <- pbkrtest::KRmodcomp(fit, m$L)
      r$krmodcomp <- list(F = kr$test["Ftest", "stat"], ndf = kr$test["Ftest", "ndf"],
                          ddf = kr$test["Ftest", "ddf"], F_scaling = kr$test["Ftest", "F.scaling"],
                          p = kr$test["Ftest", "p.value"])
      if (!is.null(m$emm)) {
        for (method in c("satterthwaite", "kenward-roger")) {
          e <- if (is.null(m$at)) emmeans(fit, m$emm, lmer.df = method) else emmeans(fit, m$emm, at = m$at, lmer.df = method)
          r[[paste0("emmeans_", method)]] <- emm_of(e)
          for (adjust in c("tukey", "bonferroni", "none")) {
            r[[paste0("pairs_", method, "_", adjust)]] <- emm_of(pairs(e, adjust = adjust))
          }
        }
      }
    }
    res[[key]] <- r
  }
  out$models[[length(out$models) + 1]] <- res
}
# type III with an interaction: lmerTest's hypotheses for the main effects are made orthogonal
# to the interaction's
fit <- lmerTest::lmer(y ~ cond * x + (x | subject) + (1 | item), data = crossed)
out$interaction <- list(name = "crossed_interaction", formula = "y ~ cond * x + (x | subject) + (1 | item)",
                        theta = as.numeric(getME(fit, "theta")),
                        hypotheses = lapply(attr(anova(fit, type = 3), "hypotheses"), unname),
                        anova_satterthwaite = table_of(anova(fit, type = 3, ddf = "Satterthwaite")),
                        anova_kenward_roger = table_of(anova(fit, type = 3, ddf = "Kenward-Roger")))
# and of two factors, the second made from the sign of x
crossed$sign <- factor(ifelse(crossed$x > 0, "pos", "neg"))
fit <- lmerTest::lmer(y ~ cond * sign + (1 | subject) + (1 | item), data = crossed)
out$factorial <- list(name = "crossed_factorial", formula = "y ~ cond * sign + (1 | subject) + (1 | item)",
                      theta = as.numeric(getME(fit, "theta")),
                      hypotheses = lapply(attr(anova(fit, type = 3), "hypotheses"), unname),
                      anova_satterthwaite = table_of(anova(fit, type = 3, ddf = "Satterthwaite")),
                      anova_kenward_roger = table_of(anova(fit, type = 3, ddf = "Kenward-Roger")))
# means of one factor averaged over the other, and of their combinations
e <- emmeans(fit, "cond", lmer.df = "satterthwaite")
out$factorial$emmeans_cond <- emm_of(e)
out$factorial$pairs_cond <- emm_of(pairs(e))
e <- emmeans(fit, c("cond", "sign"), lmer.df = "kenward-roger")
out$factorial$emmeans_cells <- emm_of(e)
out$factorial$pairs_cells <- emm_of(pairs(e))

# a GLMM's marginal means and pairs, on the link and response scales (asymptotic z, df = Inf)
cbpp <- read.csv(file.path(here, "..", "..", "..", "shared", "reference", "glmm", "cbpp.csv"),
                 colClasses = c(herd = "character", period = "character"))
# with glmer's default tolPwrss (1e-7) the estimates stop 5e-4 short of the optimum and the SEs 1%
# off (see ../../../shared/reference/glmm/glmm_reference.json, crosscheck); 1e-12 reaches it
fit <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp, family = binomial,
             control = glmerControl(tolPwrss = 1e-12))
glmm <- list(name = "cbpp", formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
             theta = as.numeric(getME(fit, "theta")), fixef = as.numeric(fixef(fit)))
for (type in c("link", "response")) {
  e <- emmeans(fit, "period", type = type)
  glmm[[paste0("emmeans_", type)]] <- emm_of(e)
  for (adjust in c("tukey", "bonferroni", "none")) {
    glmm[[paste0("pairs_", type, "_", adjust)]] <- emm_of(pairs(e, adjust = adjust, type = type))
  }
}
out$glmm <- glmm
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE),
           file.path(here, "inference_df.json"))

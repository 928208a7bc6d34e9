"""The bot's texts: one table of key -> English message, `t(lang, key, **values)` renders one.

The messages are gettext msgids marked with N_ / NP_ (core/i18n.py): `make translations` extracts them
into core/locale/segbot.pot and updates the catalogs; the Russian lives only in
core/locale/ru/LC_MESSAGES/segbot.po (docs/bot.md: how to add or change a message). A message that
says a number of things is plural (NP_): its count value picks the form (English 2, Russian 3).
Unknown languages get English.
"""

from __future__ import annotations

from core.i18n import LANGS, N_, NP_, Text, render

__all__ = ["LANGS", "MESSAGES", "PARTS", "lang_of", "message", "t"]

MESSAGES: dict[str, Text] = {
    "start": N_(
        "Hi! I am segbot. You label a few particles of one microscope image in LabelMe, send me the "
        "file, and I train your personal Cascade Mask R-CNN model. Then send me new images and I "
        "find, outline and measure every particle: overlay, LabelMe JSON, CSV in px or nm and a size "
        "histogram.\n\n"
        "{howto}\n\n"
        "Try it now: /example sends a labelled sample you can forward back to me."
    ),
    "howto": N_(
        "How to label in LabelMe: draw one or more rectangles labelled 'crop' around the areas you "
        "labelled completely, then outline every object inside them with polygons (or circles). The "
        "label of a shape is its class (e.g. 'particle', 'rod'). Save with the image embedded (File > "
        "Save With Image Data) and send the .json as a file — or send the image right after it."
    ),
    "help": N_(
        "{howto}\n\n"
        "Commands:\n"
        "/example – a labelled sample\n"
        "/train – train on what you sent\n"
        "/status – your jobs\n"
        "/cancel – stop a job\n"
        "/models – your models\n"
        "/scale 7.34 – nm per pixel (or 'scale=7.34nm' in a caption; /scale off)\n"
        "/threshold 0.7 – score threshold\n"
        "/stats – pooled statistics\n"
        "/compare – two result sets side by side\n"
        "/metal Pt – the metal, for dispersion\n"
        "/export – all your files as a zip\n"
        "/lang – English/Русский\n"
        "/forget_me – delete everything of yours\n\n"
        "{outputs}\n\n"
        "{formats}"
    ),
    "outputs": N_(
        "What you get for each image: the overlay; .json (LabelMe) – correct it in LabelMe and send "
        "it back to train the next version; _objects.csv – every object's size, for Excel; _hist.png "
        "– the size histogram; _labels.tif – a label image for Fiji, napari or cellpose; _rois.zip – "
        "the outlines for Fiji's ROI Manager. For the whole set: results.xlsx for Excel and "
        "results_coco.json (COCO) for ML tools and pycocotools."
    ),
    "formats": N_(
        "Images I read: PNG, JPEG, TIFF, BMP, ASCII height maps and the microscopes' own files – "
        "DM3/DM4, TIA .ser, EMD, MRC, Gwyddion .gwy and Nanonis .sxm – with the scale they carry. On "
        "SEM images the info bar is left out of recognition and its scale bar is read; your /scale "
        "wins over both."
    ),
    "example_caption": NP_(
        "A labelled sample: one crop rectangle and {n} outlined particle, image embedded. "
        "Forward it back to me to try training.",
        "A labelled sample: one crop rectangle and {n} outlined particles, image embedded. "
        "Forward it back to me to try training.",
    ),
    "lang_choose": N_("Choose your language:"),
    "lang_set": N_("Language: English."),
    "denied": N_("Sorry, this bot is private. Ask the admin to add your id {id} to the allowlist."),
    "slow_down": N_("Too many messages at once — please wait a few seconds."),
    "error": N_(
        "Something went wrong on my side (error id {id}). Please try again; quote this id if you "
        "report it."
    ),
    "too_big": N_(
        "This file is {size:.1f} MB; the limit is {limit:.0f} MB. Split it or send a smaller image."
    ),
    "unknown_type": N_(
        "I can't use '{name}'. Send a LabelMe .json, an image (PNG, JPEG, TIFF, BMP, or the "
        "microscope's own DM3/DM4, TIA .ser, EMD, MRC, .gwy, .sxm file) or a .zip of them."
    ),
    "downloading": NP_("Checking {n} file…", "Checking {n} files…"),
    "bad_file": N_("{name}: {reason}"),
    "summary_head": NP_(
        "Labels received ({n} file in your training set):",
        "Labels received ({n} files in your training set):",
    ),
    "summary_buttons_hint": N_("Train now, add more labelled images, or change the options first."),
    "btn_train": N_("Train now"),
    "btn_more": N_("Add more"),
    "btn_options": N_("Options"),
    "add_more": N_("Send more LabelMe files; they are added to the same training set. Then /train."),
    "need_image": N_(
        "{name} has no image inside. Send the image '{image}' as a file now (or save the JSON with "
        "the image embedded)."
    ),
    "paired": N_("Got the image for {name}."),
    "no_labels": N_("Send me labelled LabelMe files first (see /help or try /example)."),
    # TRANSLATORS: the training options as "name value" pairs; {iters} is a number or "auto"
    "options_title": N_(
        "Training options:\n"
        "preset {arch}, iterations {iters}, augmentation {aug}, rescale {rescale}.\n"
        "Estimated time: {estimate}."
    ),
    "estimate": NP_(
        "about {minutes} min ({iterations:,} iteration)",
        "about {minutes} min ({iterations:,} iterations)",
        count="iterations",
    ),
    "estimate_unknown": NP_(
        "not measured yet for this preset on this server ({iterations:,} iteration); "
        "the first training measures it",
        "not measured yet for this preset on this server ({iterations:,} iterations); "
        "the first training measures it",
        count="iterations",
    ),
    "wait_next": N_("It starts next."),
    "wait_ahead": NP_(
        "Starts in about {minutes} min, {ahead} job ahead.",
        "Starts in about {minutes} min, {ahead} jobs ahead.",
        count="ahead",
    ),
    "wait_ahead_unknown": NP_("{ahead} job ahead.", "{ahead} jobs ahead.", count="ahead"),
    "btn_start": N_("Start training"),
    "auto": N_("auto"),
    "on": N_("on"),
    "off": N_("off"),
    "queued_train": N_(
        "Training job #{job} queued (position {pos}). Estimated time: {estimate}. {wait} I will edit "
        "this message with progress."
    ),
    "already_queued": N_("Already queued (#{job}); /status shows how it goes."),
    "already_trained": N_("Already trained in job #{job}; /models lists the result."),
    "queued_predict": NP_(
        "Recognition job #{job} queued for {n} image (position {pos}).",
        "Recognition job #{job} queued for {n} images (position {pos}).",
    ),
    "queue_limit": N_("{reason}"),
    "progress": N_("Job #{job} ({kind}): {stage} {pct}%{loss}{eta}"),
    "progress_done": N_("Job #{job} ({kind}): finished."),
    "progress_failed": N_("Job #{job} ({kind}): failed."),
    "progress_cancelled": N_("Job #{job} ({kind}): cancelled."),
    "queued_state": N_("waiting in the queue"),
    "queued_wait": NP_(
        "- starts in about {minutes} min, {ahead} job ahead",
        "- starts in about {minutes} min, {ahead} jobs ahead",
        count="ahead",
    ),
    "train_done": N_(
        "Model v{version} is ready.{figures}\n"
        "It is now your active model: send images to recognise."
    ),
    "fig_learned": N_("Learned from {learned_objects} in {learned_crops}: {counts}."),
    # TRANSLATORS: a part of "Learned from {learned_objects} in {learned_crops}" (ru: prepositional case)
    "learned_objects": NP_("{n_objects} labelled object", "{n_objects} labelled objects", count="n_objects"),
    # TRANSLATORS: a part of "Learned from {learned_objects} in {learned_crops}" (ru: prepositional case)
    "learned_crops": NP_("{n_crops} crop", "{n_crops} crops", count="n_crops"),
    "fig_holdout": NP_(
        "Check on a crop held out from training ({n} labelled object): precision {precision} (the "
        "share of what it found that is right), recall {recall} (the share of your objects it found).",
        "Check on a crop held out from training ({n} labelled objects): precision {precision} (the "
        "share of what it found that is right), recall {recall} (the share of your objects it found).",
    ),
    "fig_holdout_range": N_(
        "Together (F1) {f1}; on another crop like it, likely between {low} and {high} (90 %): "
        "one crop holds few objects."
    ),
    "fig_holdout_caveat": N_("Measured on one crop of your image; other images may score lower."),
    "fig_no_holdout": NP_(
        "Not checked on held-out labels: that needs at least {min_objects} labelled object in 2 or "
        "more crops.",
        "Not checked on held-out labels: that needs at least {min_objects} labelled objects in 2 or "
        "more crops.",
        count="min_objects",
    ),
    "fig_time": N_("Trained in {time} on {device}."),
    "fig_fine_tuned": N_("Fine-tuned from v{version} with your correction: it went on from what v{version} "
                         "had learned."),
    "fig_fresh_classes": N_("Trained afresh, not from v{version}: your labels' classes differ from "
                            "v{version}'s ({classes})."),
    "fig_fresh": N_("Trained afresh: v{version} could not be fine-tuned."),
    "fig_from_base": N_("Started from segbot's base model, pretrained on published electron micrographs "
                        "of particles, not from scratch."),
    "fig_few": NP_(
        "Few labels for {classes}: label about {enough} object or more of each class for a reliable "
        "model.",
        "Few labels for {classes}: label about {enough} objects or more of each class for a reliable "
        "model.",
        count="enough",
    ),
    "short_fig_learned": N_("learned from {learned_objects} in {learned_crops} ({counts})"),
    "short_fig_holdout": NP_(
        "held-out crop ({n} object): precision {precision}, recall {recall}",
        "held-out crop ({n} objects): precision {precision}, recall {recall}",
    ),
    "short_fig_no_holdout": N_("no held-out check"),
    "short_fig_time": N_("{time} on {device}"),
    "short_fig_fine_tuned": N_("fine-tuned from v{version}"),
    "short_fig_fresh_classes": N_("trained afresh, classes differ from v{version}"),
    "short_fig_fresh": N_("trained afresh, not from v{version}"),
    "short_fig_from_base": N_("from the base model"),
    "short_fig_few": N_("few labels: {classes}"),
    # TRANSLATORS: a training time, in the units' short forms
    "duration_h": N_("{h} h {m} min"),
    "duration_min": N_("{m} min {s} s"),
    "duration_s": N_("{s} s"),
    "job_failed": N_("Job #{job} failed: {reason}"),
    "predict_caption": NP_(
        "{name}: {n} object{counts}{size}{density}{scaled}",
        "{name}: {n} objects{counts}{size}{density}{scaled}",
    ),
    "size_line": N_("\nmean D = {mean} ± {std} {unit}"),
    "density_line": N_("\ndensity {density} {unit}"),
    "scaled_line": N_("\nparticles larger than in your labels: recognised at {factor}x"),
    "inset_caption": N_("{name}, zoomed: the region in the yellow frame on the overlay."),
    "predict_big": NP_(
        "{n} image recognised; all outputs are in the zip.\n"
        "Pooled: {total_objects}{counts}\n"
        "mean D = {mean} ± {std} {unit}",
        "{n} images recognised; all outputs are in the zip.\n"
        "Pooled: {total_objects}{counts}\n"
        "mean D = {mean} ± {std} {unit}",
    ),
    # TRANSLATORS: a part of "Pooled: {total_objects}" and "Pooled over 3 images: {total_objects}"
    "total_objects": NP_("{total} object", "{total} objects", count="total"),
    "no_jobs": N_("You have no jobs."),
    "status_line": N_("#{job} {kind}: {state}{extra}"),
    "cancel_none": N_("Nothing to cancel."),
    "cancel_usage": N_("Usage: /cancel, or /cancel #12 with a job number from /status."),
    "cancel_ok": N_("Cancelling job #{job}."),
    "cancel_fail": N_("Job #{job} has already finished."),
    "no_models": N_("You have no models yet. Send labels and /train."),
    "model_line": N_("v{version} {name}– {status}, {date}{active}{metrics}"),
    "active_mark": N_(" [active]"),
    "btn_use": N_("Use v{version}"),
    "btn_rename": N_("Rename v{version}"),
    "btn_delete": N_("Delete v{version}"),
    "model_used": N_("Model v{version} is now active."),
    "model_renamed": N_("Model v{version} is now called '{name}'."),
    "model_deleted": N_("Model v{version} deleted."),
    "model_missing": N_("That model no longer exists."),
    "rename_prompt": N_("Send the new name for v{version} (up to 60 characters)."),
    "model_not_ready": N_("Model v{version} is not ready."),
    "no_model_image": N_(
        "This is an image, but you have no active model yet. To train one, send a LabelMe file with "
        "labels (see /help)."
    ),
    "images_head": N_("Images received:"),
    "scale_from": N_("scale {value} nm/px from {source}; {hint}"),
    "scale_hint": N_("/scale to change"),
    "scale_yours": N_("scale {value} nm/px as you set it{own}"),
    "scale_yours_own": N_(" (not the file's {value} nm/px from {source})"),
    "scale_none": N_(
        "no scale in the file, sizes in px; set one with /scale 7.34 or 'scale=7.34nm' in the caption"
    ),
    "scale_left_out": N_("left out of recognition and statistics: {regions}"),
    "scale_check": N_("not sure of this reading: answer below"),
    "scale_unsure": N_(
        "{name}: I read the scale as {value} nm/px ({source}), but I am not sure of this reading "
        "(confidence {conf}). Use it? Recognition starts when you answer."
    ),
    "btn_scale_use": N_("Use {value} nm/px"),
    "btn_scale_no": N_("No scale"),
    "scale_used": N_("{name}: scale {value} nm/px, as you confirmed."),
    "scale_not_used": N_("{name}: no scale from the scale bar; sizes in px (or your /scale)."),
    "scale_answered": N_("Already answered: job #{job}."),
    "photo_note": N_("Note: compressed photos lose detail; send images as files to keep full resolution."),
    "scale_set": N_("Scale: {value} nm per pixel."),
    "scale_off": N_("Scale removed; sizes will be in pixels."),
    "scale_usage": N_("Usage: /scale 7.34 (nm per pixel) or /scale off. Now: {value}."),
    "threshold_set": N_("Score threshold: {value}."),
    "threshold_usage": N_("Usage: /threshold 0.7 (between 0.05 and 0.95). Now: {value}."),
    "stats_none": N_("No results yet: send images to recognise first."),
    "stats": NP_(
        "Pooled over {n} image: {total_objects}{counts}\nmean D = {mean} ± {std} {unit}",
        "Pooled over {n} images: {total_objects}{counts}\nmean D = {mean} ± {std} {unit}",
    ),
    "metal_usage": N_(
        "Usage: /metal Pt – the metal of your particles, for their dispersion (fraction of surface "
        "atoms, spheres; Bergeret & Gallezot 2008) in /stats and /compare; /metal off. Known: {metals}. "
        "Now: {value}."
    ),
    "metal_set": N_(
        "Metal: {metal}. Dispersion D = {product} nm / d_s (d_s: the surface-weighted mean size)."
    ),
    "metal_off": N_("Metal removed; no dispersion is given."),
    "metal_unknown": N_("'{value}' is not in the table. Known: {metals}."),
    "compare_few": NP_(
        "You have {n} result set; /compare needs two: send more images to recognise first.",
        "You have {n} result sets; /compare needs two: send more images to recognise first.",
    ),
    "compare_choose_a": N_("Compare two result sets. Choose the first (A):"),
    "compare_choose_b": N_("A: {a}\nNow choose the second (B):"),
    "compare_working": N_("Comparing…"),
    "compare_caption": N_("Both size distributions: histograms with the fitted log-normals, and ECDFs."),
    "export_none": N_("You have nothing to export yet."),
    "export_big": N_(
        "Your export is {size:.0f} MB, over the 50 MB Telegram limit; delete old models or ask the "
        "admin."
    ),
    "export_caption": N_("All your files."),
    "forget_confirm": N_("Delete ALL your files, results, models and settings? This cannot be undone."),
    "btn_forget_yes": N_("Yes, delete everything"),
    "btn_cancel": N_("Cancel"),
    "forgotten": N_("Done: everything of yours is deleted. Send /start to begin again."),
    "forgotten_already": N_("Nothing of yours is stored: it was deleted already."),
    "cancelled": N_("Cancelled."),
    "correction": NP_(
        "This looks like a corrected version of result '{name}' ({n} object). Train the next model "
        "version with it?",
        "This looks like a corrected version of result '{name}' ({n} objects). Train the next model "
        "version with it?",
    ),
    "btn_train_correction": N_("Train next version"),
    "correction_saved": NP_(
        "Correction saved: {removed_objects}, {added_objects}{relabelled}. Train the next version?\n"
        "{name}: {n} object now.",
        "Correction saved: {removed_objects}, {added_objects}{relabelled}. Train the next version?\n"
        "{name}: {n} objects now.",
    ),
    # TRANSLATORS: a part of "Correction saved: {removed_objects}, {added_objects}" (bot and page)
    "removed_objects": NP_("{removed} object removed", "{removed} objects removed", count="removed"),
    # TRANSLATORS: a part of "Correction saved: {removed_objects}, {added_objects}" (bot and page)
    "added_objects": NP_("{added} object added", "{added} objects added", count="added"),
    "relabelled": NP_(", {n} object relabelled", ", {n} objects relabelled"),
    "btn_review": N_("Review"),
    "btn_label": N_("Label"),
    "btn_label_named": N_("Label {name}"),
    "btn_label_suggest": N_("Label where the model is least sure"),
    "no_model_label": N_(
        "This is an image, but you have no model yet. Label it right here: press Label, draw crop "
        "rectangles and tap every particle inside them, then Save and Train now. (Or send a LabelMe "
        "file with labels, see /help.)"
    ),
    "label_pick": N_("Label one of your recent images (crops and outlines, then Train now):"),
    "label_none": N_("No images yet: send a microscope image first, then /label."),
    "label_off": N_("Labelling on the phone needs the Mini App, which this bot does not serve."),
    "btn_review_named": N_("Review {name}"),
    "admin_only": N_("This command is for admins."),
    "admin": N_(
        "Queue: {queue}\n"
        "Users: {users}\n"
        "Jobs in 24 h: {jobs24}, GPU seconds in 24 h: {gpu:.0f}\n"
        "Broadcast: /admin broadcast <text>"
    ),
    "broadcast_done": NP_("Sent to {n} user.", "Sent to {n} users."),
    "unknown_command": N_("Unknown command. See /help."),
    "text_hint": N_("Send a LabelMe .json or an image as a file, or see /help."),
    "stale_button": N_("This button has expired; please start again."),
    "zip_bad": N_("{name}: not a usable zip ({reason})."),
    "zip_empty": N_("{name}: no LabelMe .json or images inside."),
}

# Messages that are also parts of others: a placeholder that names one ({howto}, {total_objects}) and
# is not among the values is filled by that message, rendered with the same values. So a text with
# two counts ("3 images: 120 objects") gets each its own plural form.
PARTS = frozenset({
    "howto", "outputs", "formats", "total_objects", "learned_objects", "learned_crops",
    "removed_objects", "added_objects",
})


def lang_of(language_code: str | None) -> str:
    """Telegram's language_code -> one of LANGS."""
    code = (language_code or "").lower()
    return "ru" if code.startswith(("ru", "uk", "be", "kk")) else "en"


def message(key: str, **values: object) -> Text:
    """Message `key` with its values, the parts it names among them (not yet in a language)."""
    text = MESSAGES[key]
    for name in sorted(text.placeholders & PARTS - values.keys()):
        values[name] = message(name, **values)
    return text.with_values(**values)


def t(lang: str, key: str, **values: object) -> str:
    """Message `key` in `lang` with `values` (a plural message needs its count among them)."""
    return render(lang, message(key, **values))

from django.contrib.sitemaps.views import sitemap
from django.urls import path

from . import views
from .feeds import ArticleFeed
from .sitemaps import SITEMAPS

urlpatterns = [
    path("", views.home, name="home"),
    path("blog/", views.blog_list, name="blog"),
    # Before the article: no article may be called "feed" (see services.blog).
    path("blog/feed/", ArticleFeed(), name="blog_feed"),
    path("blog/<slug:slug>/", views.blog_article, name="blog_article"),
    path(
        "sitemap.xml",
        sitemap,
        {"sitemaps": SITEMAPS},
        name="django.contrib.sitemaps.views.sitemap",
    ),
    path("signup/", views.signup, name="signup"),
    path("signup/done/", views.signup_done, name="signup_done"),
    path("verify/resend/", views.resend_verification, name="verify_resend"),
    path("verify/<uidb64>/<token>/", views.verify, name="verify"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("password-reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path(
        "password-reset/done/",
        views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "password-reset/<uidb64>/<token>/",
        views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "password-reset/complete/",
        views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("profile/", views.profile, name="profile"),
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("t/o/<str:token>/", views.track_open, name="track_open"),
    path("t/c/<str:token>/<int:index>/", views.track_click, name="track_click"),
    path("preferences/<str:token>/", views.preferences, name="preferences"),
    path(
        "subscribe/confirm/<str:token>/",
        views.subscribe_confirm,
        name="subscribe_confirm",
    ),
    path("subscribe/<slug:slug>/", views.subscribe, name="subscribe"),
    path("subscribe/<slug:slug>/sent/", views.subscribe_sent, name="subscribe_sent"),
]
